"""The ``rnnkit`` command end to end, in subprocesses: train, info, evaluate, predict, help and user errors.

Every command runs once, in a module fixture that starts them a few at a time (each process spends
about two seconds importing torch); the tests then read the results. A user error is one line
``rnnkit: error: ...`` on stderr and exit code 2, never a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rnnkit.bundle import load_bundle
from rnnkit.tasks import forecast

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOOKBACK, HORIZON = 10, 3

CONFIG = {
    "task": "forecast",
    "data": {
        "synthetic": "sine",
        "synthetic_options": {"points": 100, "noise": 0.1, "seed": 0},
        "lookback": LOOKBACK,
        "horizon": HORIZON,
        "test_fraction": 0.2,
        "validation_fraction": 0.1,
        "scaler": "standard",
    },
    "model": {"cell": "gru", "hidden_size": 8},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "optimizer": {"name": "adam", "lr": 0.01},
        "seed": 0,
        "progress": False,
        "tensorboard": False,
    },
}

SUBCOMMANDS = ["train", "resume", "evaluate", "predict", "info", "sine"]


def sine_column(n: int, phase: float = 0.0) -> list[float]:
    return [round(float(np.sin(0.5 * i + phase)), 6) for i in range(n)]


def write_csv(path: Path, columns: dict[str, list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def rnnkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnkit", *args]


def run_all(commands: dict[str, tuple[list[str], Path]], workers: int = 3) -> dict:
    """{name: CompletedProcess} for {name: (argv, cwd)}, a few processes at a time."""

    def one(argv, cwd):
        return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(one, *command) for name, command in commands.items()}
    return {name: future.result() for name, future in futures.items()}


class Workspace:
    """Files the commands read, and what each command did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.bundle = self.run / "bundle"
        self.config = root / "tiny.yaml"
        self.config.write_text(yaml.safe_dump({**CONFIG, "out_dir": str(self.run)}))
        self.history = write_csv(
            root / "history.csv", {"other": list(range(25)), "value": sine_column(25, phase=0.3)}
        )
        self.eval_data = write_csv(root / "eval.csv", {"value": sine_column(40, phase=1.0)})
        self.no_target = write_csv(root / "temperature.csv", {"temp": sine_column(30)})
        self.short = write_csv(root / "short.csv", {"value": [1.0, 2.0, 3.0]})
        self.blank_line = root / "blank.csv"
        self.blank_line.write_text("value\n" + "\n".join(map(str, sine_column(8))) + "\n\n0.5\nx\n0.25\n")
        (root / "bad.yaml").write_text("task: forecast\ndata: [1, 2\n")
        (root / "not-a-bundle").mkdir()
        (root / "not-a-bundle" / "notes.txt").write_text("hello\n")
        for name in ("no-checkpoint", "7"):  # run directories without a checkpoint
            (root / name).mkdir()
            (root / name / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "out_dir": name}))
        self.results: dict[str, subprocess.CompletedProcess] = {}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("cli"))
    root, config = ws.root, str(ws.config)
    first = {
        "train": (rnnkit("train", config), root),  # first: the second batch needs its bundle
        "help": (rnnkit("--help"), root),
        **{f"help-{c}": (rnnkit(c, "--help"), root) for c in SUBCOMMANDS},
        **{name: (rnnkit(*args), root) for name, (args, _) in ERRORS_BEFORE_TRAINING.items()},
        "debug-missing-config": (rnnkit("--debug", "train", str(root / "missing.yaml")), root),
        "debug-model-key": (rnnkit("--debug", "train", config, "model.hiden_size=3", f"out_dir={root}/failed"), root),
    }
    ws.results.update(run_all(_resolve(first, ws)))
    train_result = ws.results["train"]
    assert train_result.returncode == 0, f"training failed:\n{train_result.stdout}\n{train_result.stderr}"
    second = {
        "info": (rnnkit("info", str(ws.bundle)), root),
        "evaluate": (rnnkit("evaluate", str(ws.bundle)), root),
        "evaluate-data": (rnnkit("evaluate", str(ws.bundle), "--data", str(ws.eval_data)), root),
        "predict": (rnnkit("predict", str(ws.bundle), str(ws.history)), root),
        "fresh-load": ([sys.executable, "-c", FRESH_LOAD, str(ws.bundle), str(ws.history)], root),
        **{name: (rnnkit(*args), root) for name, (args, _) in ERRORS_WITH_BUNDLE.items()},
    }
    ws.results.update(run_all(_resolve(second, ws)))
    return ws


def _resolve(commands: dict, ws: Workspace) -> dict:
    """Fill the {root}, {config} and {bundle} placeholders of the argument lists."""
    fill = {"{root}": ws.root, "{config}": ws.config, "{bundle}": ws.bundle}

    def resolve(argument: str) -> str:
        for placeholder, value in fill.items():
            argument = argument.replace(placeholder, str(value))
        return argument

    return {name: ([resolve(a) for a in argv], cwd) for name, (argv, cwd) in commands.items()}


# ---------------------------------------------------------------- the round trip


def test_train_prints_the_metrics_table(ws):
    result = ws.results["train"]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"test windows: \d+", lines[0]), result.stdout
    assert re.fullmatch(r"\s+MAE\s+RMSE", lines[1])
    assert re.fullmatch(r"  model\s+\d+\.\d{4}\s+\d+\.\d{4}", lines[2])
    assert re.fullmatch(r"  last value\s+\d+\.\d{4}\s+\d+\.\d{4}", lines[3])
    assert lines[4].startswith(f"run directory {ws.run}")
    assert "Traceback" not in result.stderr
    for name in ("config.yaml", "log.csv", "loss.png", "checkpoints/last.pt", "bundle/model.safetensors"):
        assert (ws.run / name).is_file(), name


def test_info_describes_the_bundle(ws):
    result = ws.results["info"]
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format_version"] == 1
    assert info["model"] == "forecaster"
    assert info["model_config"]["horizon"] == HORIZON and info["model_config"]["hidden_size"] == 8
    assert info["metrics"] == json.loads((ws.bundle / "metrics.json").read_text())
    assert {"model_mae", "model_rmse", "last_value_mae", "last_value_rmse", "steps"} <= set(info["metrics"])
    assert info["parameters"] == sum(p.numel() for p in load_bundle(ws.bundle).model.parameters())
    assert "model.safetensors" in info["files"]


def test_evaluate_prints_the_training_test_metrics(ws):
    result = ws.results["evaluate"]
    assert result.returncode == 0, result.stderr
    metrics = json.loads((ws.bundle / "metrics.json").read_text())
    assert result.stdout == forecast.metrics_table(metrics) + "\n"


def test_evaluate_on_a_file(ws):
    result = ws.results["evaluate-data"]
    assert result.returncode == 0, result.stderr
    windows = 40 - LOOKBACK - HORIZON + 1
    assert result.stdout.startswith(f"test windows: {windows}\n")
    bundle = load_bundle(ws.bundle)
    dataset = forecast.dataset_from_file(ws.eval_data, bundle.preprocessing)
    expected = forecast.metrics_table(forecast.evaluate(bundle.model, dataset, bundle.preprocessing))
    assert result.stdout == expected + "\n"


def test_predict_writes_horizon_rows_of_csv(ws):
    result = ws.results["predict"]
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["step", "forecast"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, HORIZON + 1))
    bundle = load_bundle(ws.bundle)
    series = forecast.read_csv_column(ws.history, "value")
    expected = forecast.forecast(bundle.model, series, bundle.preprocessing)
    assert [r[1] for r in rows[1:]] == [f"{v:.6g}" for v in expected]


FRESH_LOAD = """
import json, sys
import torch
from rnnkit.bundle import load_bundle
from rnnkit.tasks import forecast

bundle = load_bundle(sys.argv[1])
series = forecast.read_csv_column(sys.argv[2], bundle.preprocessing["target"])
test = forecast.prepare(forecast.DataConfig(**bundle.config["data"])).test
print(json.dumps({
    "forecast": forecast.forecast(bundle.model, series, bundle.preprocessing).tolist(),
    "test": bundle.model.predict(test.tensors[0]).flatten().tolist(),
}))
"""


def test_bundle_predicts_the_same_in_a_fresh_process(ws):
    result = ws.results["fresh-load"]
    assert result.returncode == 0, result.stderr
    fresh = json.loads(result.stdout)
    bundle = load_bundle(ws.bundle)
    series = forecast.read_csv_column(ws.history, "value")
    test = forecast.prepare(forecast.DataConfig(**bundle.config["data"])).test
    assert fresh["forecast"] == forecast.forecast(bundle.model, series, bundle.preprocessing).tolist()
    assert torch.equal(torch.tensor(fresh["test"]), bundle.model.predict(test.tensors[0]).flatten())
    assert len(fresh["forecast"]) == HORIZON


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("name", ["help", *(f"help-{c}" for c in SUBCOMMANDS)])
def test_help_exits_0(ws, name):
    result = ws.results[name]
    assert result.returncode == 0, result.stderr
    command = name.removeprefix("help").removeprefix("-")
    assert result.stdout.startswith(f"usage: rnnkit {command}".rstrip())
    assert result.stderr == ""


def test_top_level_help_lists_every_subcommand(ws):
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", ws.results["help"].stdout, re.MULTILINE), command


# ---------------------------------------------------------------- user errors

FAILED = "out_dir={root}/failed"  # a run that fails must not write anything, here or elsewhere

# name: (arguments, the message after "rnnkit: error: ", as a regex)
ERRORS_BEFORE_TRAINING = {
    "missing-config": (["train", "{root}/missing.yaml"], r"config file '.*missing\.yaml' does not exist"),
    "unknown-key": (
        ["train", "{config}", "train.lrr=0.1", FAILED],
        r".*tiny\.yaml: unknown key 'train\.lrr'; .*'optimizer'.*",
    ),
    "unknown-nested-key": (
        ["train", "{config}", "train.optimizer.lrr=0.1", FAILED],
        r".*unknown key 'train\.optimizer\.lrr'; did you mean 'train\.optimizer\.lr'\?",
    ),
    "bad-override-syntax": (
        ["train", "{config}", FAILED, "train.lr"],
        r"override 'train\.lr' must look like key=value with a dotted key, e\.g\. train\.lr=3e-4",
    ),
    "wrong-type": (
        ["train", "{config}", "train.epochs=abc", FAILED],
        r".*train\.epochs: Input should be a valid integer.*\(got 'abc'\)",
    ),
    "unknown-model-key": (
        ["train", "{config}", "model.hiden_size=3", FAILED],
        r"model: unknown key 'hiden_size'; did you mean 'hidden_size'\?",
    ),
    "missing-data-file": (
        ["train", "{config}", "data.synthetic=null", "data.path={root}/missing.csv", FAILED],
        r"data file '.*missing\.csv' does not exist",
    ),
    "csv-without-target": (
        ["train", "{config}", "data.synthetic=null", "data.path={root}/temperature.csv", FAILED],
        r".*temperature\.csv has no column 'value'; its columns are \['temp'\]",
    ),
    "not-a-bundle": (["info", "{root}/not-a-bundle"], r".*not-a-bundle is not an rnnkit bundle \(no bundle\.json\).*"),
    "resume-without-checkpoint": (
        ["resume", "{root}/no-checkpoint"],
        r"no checkpoint to resume from at .*no-checkpoint/checkpoints/last\.pt.*",
    ),
    "resume-run-dir-named-like-a-number": (  # cwd is the workspace: the path is "7"
        ["resume", "7"],
        r"no checkpoint to resume from at 7/checkpoints/last\.pt.*",
    ),
    "invalid-yaml": (["train", "{root}/bad.yaml"], r".*bad\.yaml is not valid YAML.*"),
    "unknown-synthetic-option": (
        ["train", "{config}", "data.synthetic_options.bogus=1", FAILED],
        r".*bogus.*",
    ),
}
ERRORS_WITH_BUNDLE = {
    "predict-without-target": (
        ["predict", "{bundle}", "{root}/temperature.csv"],
        r".*temperature\.csv has no column 'value'; its columns are \['temp'\]",
    ),
    "predict-short-history": (
        ["predict", "{bundle}", "{root}/short.csv"],
        rf"the input has 3 values; the model reads the last {LOOKBACK}",
    ),
    "predict-bad-cell": (  # header line 1, values 2-9, blank line 10, 0.5 on 11, x on 12
        ["predict", "{bundle}", "{root}/blank.csv"],
        r".*blank\.csv: column 'value' is empty or not a number on lines \[12\].*",
    ),
}


def _error_cases():
    for name, (_, message) in {**ERRORS_BEFORE_TRAINING, **ERRORS_WITH_BUNDLE}.items():
        yield pytest.param(name, message, id=name)


@pytest.mark.parametrize(("name", "message"), _error_cases())
def test_user_error_is_one_line_and_exit_2(ws, name, message):
    result = ws.results[name]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(rf"rnnkit: error: {message}\n", result.stderr), result.stderr
    assert result.stdout == ""
    assert not (ws.root / "failed").exists()


@pytest.mark.parametrize(
    ("name", "error"),
    [("debug-missing-config", "ConfigError: config file"), ("debug-model-key", "ConfigError: model: unknown key")],
)
def test_debug_shows_the_traceback(ws, name, error):
    result = ws.results[name]
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert f"rnnkit.errors.{error}" in result.stderr
    assert "rnnkit: error:" not in result.stderr
