"""The task contract: a task defined and registered here, in a test file, trains, saves, evaluates
and predicts through the CLI and ``rnnkit.load`` with no change anywhere else in rnnkit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest
import torch
import yaml
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

import rnnkit
import rnnkit.run
from rnnkit.cli.main import main
from rnnkit.config import Config
from rnnkit.errors import ConfigError
from rnnkit.models import register_model
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, get_task, register_task, task_names

# ---- the toy task: the running sum of a sequence of numbers ------------------------------------


class SumData(Config):
    sequences: int = Field(256, gt=8)
    length: int = Field(6, gt=0)
    seed: int = 0


class SumModelConfig(Config):
    name: Literal["toy_sum"] = "toy_sum"
    hidden_size: int = Field(16, gt=0)
    length: int = Field(6, gt=0)


@register_model("toy_sum", SumModelConfig)
class SumModel(nn.Module):
    def __init__(self, config: SumModelConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = rnnkit.GRU(1, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, 1)

    def initial_state(self, batch_size: int) -> None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 1) -> (B,)
        return self.head(self.rnn(x).outputs[:, -1])[:, 0]

    def loss(self, inputs, targets, lengths=None, state=None):
        return nn.functional.mse_loss(self(inputs), targets), None

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self(inputs)


@dataclass(kw_only=True)
class SumPrepared(Prepared):
    train_mean: float


class SumPredictor(Predictor):
    verbs = (*Predictor.verbs, "predict")

    def predict(self, inputs, **options) -> list[dict]:
        rows = [[float(v) for v in text.split(",")] for text in inputs]
        x = torch.tensor(rows)[..., None] / 10  # (B, T, 1)
        with torch.no_grad():
            sums = (self.model.predict(x) * 10).tolist()
        return [{"input": text, "sum": value} for text, value in zip(inputs, sums, strict=True)]


class SumTask(Task[SumData, SumPrepared]):
    name = "toy_sum"
    data_config = SumData
    default_model = "toy_sum"

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> SumPrepared:
        generator = torch.Generator().manual_seed(config.seed)
        x = torch.randint(0, 10, (config.sequences, config.length, 1), generator=generator).float() / 10
        y = x.sum(dim=(1, 2))
        n = config.sequences // 4
        parts = [TensorDataset(x[a:b], y[a:b]) for a, b in ((2 * n, None), (n, 2 * n), (0, n))]
        return SumPrepared(
            train=parts[0],
            validation=parts[1],
            test=parts[2],
            preprocessing={"scale": 10},
            train_mean=float(y[2 * n :].mean()),
        )

    def model_keys(self, config, prepared=None) -> ModelKeys:
        return ModelKeys(fixed={"length": config.length})

    def evaluate(self, model, prepared) -> dict:
        x, y = prepared.test.tensors
        with torch.no_grad():
            error = float(((model.predict(x) - y) ** 2).mean())
        return {"mse": error, "mean_baseline_mse": float(((prepared.train_mean - y) ** 2).mean())}

    def metrics_table(self, metrics) -> str:
        return f"test MSE {metrics['mse']:.4f} (mean baseline {metrics['mean_baseline_mse']:.4f})"

    def predictor(self, bundle) -> Predictor:
        return SumPredictor(self, bundle)


register_task(SumTask())


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "toy_sum",
                "out_dir": str(tmp_path / "run"),
                "data": {"sequences": 256, "length": 6},
                "model": {"hidden_size": 16},
                "train": {"epochs": 40, "batch_size": 16, "optimizer": {"lr": 0.02}, "progress": False},
            }
        )
    )
    return path


# ---- tests --------------------------------------------------------------------------------------


def test_a_registered_task_trains_saves_and_predicts_through_the_cli_and_load(config_file, tmp_path, capsys):
    assert "toy_sum" in task_names() and get_task("toy_sum").name == "toy_sum"
    assert main(["train", str(config_file)]) == 0
    printed = capsys.readouterr().out
    assert "test MSE" in printed and "wrote" in printed
    bundle = tmp_path / "run" / "bundle"
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["mse"] < 0.2 * metrics["mean_baseline_mse"], metrics  # it learnt to add

    predictor = rnnkit.load(bundle)
    assert isinstance(predictor, SumPredictor) and predictor.data_config == SumData()
    (result,) = predictor.predict(["1,2,3,4,5,6"])
    assert result["sum"] == pytest.approx(21, abs=2.5)
    report = predictor.evaluate()
    assert report["mse"] == pytest.approx(metrics["mse"], rel=1e-5)
    assert str(report).startswith("test MSE")
    assert predictor.describe()["task"] == "toy_sum" and predictor.describe()["verbs"] == list(
        SumPredictor.verbs
    )
    with pytest.raises(rnnkit.RnnkitError, match=r"a toy_sum model does not generate; .* offers .*predict"):
        predictor.generate("1,2")
    with pytest.raises(rnnkit.RnnkitError, match=r"a toy_sum model does not keep a session"):
        predictor.session()

    assert main(["predict", str(bundle), "--text", "1,2,3,4,5,6", "--text", "0,0,0,0,0,1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == ["1,2,3,4,5,6", "0,0,0,0,0,1"]
    assert main(["evaluate", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mse"] == pytest.approx(metrics["mse"], rel=1e-5)
    assert main(["info", str(bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["verbs"] == ["describe", "evaluate", "predict"]
    assert main(["config", "toy_sum"]) == 0
    listed = capsys.readouterr().out
    assert "data.sequences" in listed and "model.length" in listed and "(set by the data)" in listed


def test_a_task_refuses_model_keys_its_data_fixes(config_file):
    with pytest.raises(ConfigError, match=r"override 'model\.length=3': model\.length is fixed by the data"):
        rnnkit.run.load_run_config(config_file, ["model.length=3"])


def test_register_task_refuses_a_second_class_under_one_name():
    class Other(SumTask):
        pass

    with pytest.raises(ConfigError, match=r"task name 'toy_sum' is already registered to SumTask"):
        register_task(Other())


def test_an_unknown_task_names_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown task 'forcast'.*Did you mean 'forecast'\?"):
        get_task("forcast")
