"""Bundles round-trip exactly, save atomically, load without unpickling, and name the fix when broken."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Literal

import pytest
import safetensors.torch
import torch
import yaml
from torch import nn

import rnnkit
from rnnkit import bundle as bundle_module
from rnnkit.bundle import BUNDLE_FORMAT, Bundle, describe_bundle, load_bundle, save_bundle
from rnnkit.config import Config
from rnnkit.errors import ConfigError, DataError
from rnnkit.models import register_model

FILES = {"bundle.json", "config.yaml", "model.safetensors", "preprocessing.json", "metrics.json"}


class TinyConfig(Config):
    name: Literal["test-bundle-lstm"] = "test-bundle-lstm"
    input_size: int = 3
    hidden_size: int = 4
    num_layers: int = 1
    output_size: int = 2


@register_model("test-bundle-lstm", TinyConfig)
class TinyModel(nn.Module):
    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = rnnkit.LSTM(config.input_size, config.hidden_size, num_layers=config.num_layers)
        self.head = nn.Linear(config.hidden_size, config.output_size)
        self.register_buffer("scale", torch.ones(config.output_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x).outputs) * self.scale  # (B, T, 2)


class TiedConfig(Config):
    name: Literal["test-bundle-tied"] = "test-bundle-tied"
    vocab_size: int = 7
    hidden_size: int = 4


@register_model("test-bundle-tied", TiedConfig)
class TiedModel(nn.Module):
    """An embedding tied to the output layer, plus a buffer that is a transposed (non-contiguous) view."""

    def __init__(self, config: TiedConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("mix", torch.randn(config.hidden_size, config.hidden_size).t())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens) @ self.mix)  # (B, T, V)


def run_config(**model) -> dict:
    return {"seed": 0, "model": {"name": "test-bundle-lstm", **model}, "train": {"lr": 0.003, "epochs": 2}}


def tiny(**model) -> TinyModel:
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(**model))
    with torch.no_grad():
        model.scale.mul_(3.0)  # a buffer that differs from its initial value
    return model


def saved(tmp_path: Path, name: str = "bundle", **model) -> Path:
    prep = {"vocab": ["<pad>", "a"], "scaler": {"mean": [0.5, 1.0, -2.0], "std": [1.0, 2.0, 3.0]}}
    return save_bundle(tmp_path / name, tiny(**model), run_config(**model), prep, {"val_mse": 0.25})


def x() -> torch.Tensor:
    return torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))  # (B, T, D)


# ---------------------------------------------------------------- round trip


def test_round_trip_gives_identical_weights_and_outputs(tmp_path):
    model = tiny()
    path = save_bundle(tmp_path / "b", model, run_config())
    loaded = load_bundle(path)
    assert isinstance(loaded, Bundle) and isinstance(loaded.model, TinyModel) and loaded.path == path
    expected, got = model.state_dict(), loaded.model.state_dict()
    assert list(got) == list(expected)
    assert "rnn.weight_ih_l0" in got
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert not loaded.model.training
    model.eval()
    assert torch.equal(loaded.model(x()), model(x()))


def test_round_trip_gives_back_config_preprocessing_metrics_and_info(tmp_path):
    path = saved(tmp_path, hidden_size=6, num_layers=2)
    loaded = load_bundle(path)
    assert loaded.config == run_config(hidden_size=6, num_layers=2)
    assert loaded.model.config == TinyConfig(hidden_size=6, num_layers=2)
    assert loaded.preprocessing == {
        "scaler": {"mean": [0.5, 1.0, -2.0], "std": [1.0, 2.0, 3.0]},
        "vocab": ["<pad>", "a"],
    }
    assert loaded.metrics == {"val_mse": 0.25}
    assert loaded.info["format_version"] == BUNDLE_FORMAT
    assert loaded.info["rnnkit_version"] == rnnkit.__version__
    assert loaded.info["model"] == "test-bundle-lstm"
    assert loaded.info["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert loaded.info["created"].endswith("+00:00")


def test_saved_files_are_exactly_the_layout_and_readable_without_rnnkit(tmp_path):
    path = save_bundle(tmp_path / "b", tiny(), run_config())
    assert {p.name for p in path.iterdir()} == FILES
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary directory left behind
    assert yaml.safe_load((path / "config.yaml").read_text()) == run_config()
    assert (path / "config.yaml").read_text().startswith("seed: 0\nmodel:\n  name: test-bundle-lstm\n")
    assert json.loads((path / "preprocessing.json").read_text()) == {}
    assert json.loads((path / "metrics.json").read_text()) == {}
    assert set(safetensors.torch.load_file(path / "model.safetensors")) == set(tiny().state_dict())


def test_tied_weights_and_non_contiguous_buffers_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TiedModel(TiedConfig())
    path = save_bundle(tmp_path / "b", model, {"model": {"name": "test-bundle-tied"}})
    loaded = load_bundle(path).model
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert torch.equal(loaded(tokens), model.eval()(tokens))
    assert loaded.out.weight is loaded.embed.weight


def test_load_moves_to_device(tmp_path):
    path = saved(tmp_path)
    for device in ("cpu", torch.device("cpu")):
        model = load_bundle(path, device=device).model
        assert {p.device for p in model.parameters()} == {torch.device("cpu")}


# ---------------------------------------------------------------- atomic saving


def test_saving_over_an_existing_bundle_replaces_it(tmp_path):
    saved(tmp_path, hidden_size=4)
    path = save_bundle(tmp_path / "bundle", tiny(hidden_size=8), run_config(hidden_size=8), None, {"v": 2})
    loaded = load_bundle(path)
    assert loaded.model.config.hidden_size == 8 and loaded.metrics == {"v": 2} and loaded.preprocessing == {}
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_saving_into_an_empty_directory_and_a_new_parent(tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "a" / "b" / "bundle"):
        save_bundle(target, tiny(), run_config())
        assert {p.name for p in target.iterdir()} == FILES


def test_saving_refuses_to_replace_something_that_is_not_a_bundle(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("1,2\n")
    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "data", tmp_path / "file"):
        with pytest.raises(DataError, match="exists and is not an rnnkit bundle; remove it"):
            save_bundle(target, tiny(), run_config())
    assert (tmp_path / "data" / "keep.csv").read_text() == "1,2\n"


def crash_in_save_file(monkeypatch):
    def save_file(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def crash_in_json_dumps(monkeypatch):
    calls, dumps = [], json.dumps

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return dumps(*args, **kwargs)

    monkeypatch.setattr(json, "dumps", crashing)


def crash_renaming_in(monkeypatch):
    rename = os.rename

    def crashing(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError("disk full")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", crashing)


@pytest.mark.parametrize("crash", [crash_in_save_file, crash_in_json_dumps, crash_renaming_in])
def test_a_crash_while_saving_leaves_the_old_bundle_intact_and_no_temp_dir(tmp_path, monkeypatch, crash):
    path = saved(tmp_path, hidden_size=4)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    crash(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(path, tiny(hidden_size=8), run_config(hidden_size=8))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert load_bundle(path).model.config.hidden_size == 4


def test_a_crash_while_saving_a_new_bundle_leaves_nothing(tmp_path, monkeypatch):
    crash_in_save_file(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(tmp_path / "b", tiny(), run_config())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- errors when saving


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"model": {"name": "no-such-model"}}, "unknown model 'no-such-model'"),
        ({"model": {"name": "test-bundle-lstn"}}, "Did you mean 'test-bundle-lstm'"),
        ({"model": {"name": "test-bundle-lstm", "hiden_size": 4}}, "unknown key 'hiden_size'"),
        ({"train": {"lr": 0.1}}, "the run config needs a 'model' mapping"),
        ({"model": "test-bundle-lstm"}, "the run config needs a 'model' mapping"),
        ({"model": {"name": "test-bundle-lstm", "hidden_size": 9}}, "does not describe the model"),
        ({"model": {"name": "test-bundle-lstm"}, "out": Path("runs")}, "must be plain JSON data"),
    ],
)
def test_save_refuses_a_config_that_cannot_rebuild_the_model(tmp_path, config, match):
    with pytest.raises(ConfigError, match=match):
        save_bundle(tmp_path / "b", tiny(), config)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_preprocessing_that_is_not_json(tmp_path):
    with pytest.raises(ConfigError, match=r"must be plain JSON data.*Tensor"):
        save_bundle(tmp_path / "b", tiny(), run_config(), {"mean": torch.zeros(3)})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- errors when loading


def test_load_a_missing_directory(tmp_path):
    for load in (load_bundle, describe_bundle):
        with pytest.raises(DataError, match=r"bundle '.*nowhere' does not exist; pass the directory"):
            load(tmp_path / "nowhere")


def test_load_a_directory_that_is_not_a_bundle(tmp_path):
    with pytest.raises(DataError, match=r"is not an rnnkit bundle \(no bundle.json\)"):
        load_bundle(tmp_path)


def edit_info(path: Path, **changes) -> None:
    info = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**info, **changes}))


def test_load_a_bundle_from_a_newer_rnnkit(tmp_path):
    path = saved(tmp_path)
    edit_info(path, format_version=BUNDLE_FORMAT + 1, rnnkit_version="9.0")
    with pytest.raises(
        DataError,
        match=r"bundle format 2, made by a newer rnnkit \(9.0\); this one reads 1: upgrade rnnkit",
    ):
        load_bundle(path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format_version": "1"}'])
def test_load_a_damaged_bundle_json(tmp_path, text):
    path = saved(tmp_path)
    (path / "bundle.json").write_text(text)
    with pytest.raises(
        DataError, match=r"bundle.json (does not hold a JSON object|has no valid format_version)"
    ):
        load_bundle(path)


@pytest.mark.parametrize("name", sorted(FILES - {"bundle.json"}))
def test_load_a_bundle_with_a_missing_file(tmp_path, name):
    path = saved(tmp_path)
    (path / name).unlink()
    with pytest.raises(DataError, match=rf"is missing \['{name}'\]; copy the whole directory"):
        load_bundle(path)


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a safetensors header"])
def test_load_weights_that_are_not_safetensors(tmp_path, content):
    path = saved(tmp_path)
    (path / "model.safetensors").write_bytes(content)
    with pytest.raises(DataError, match=r"model\.safetensors is not a valid safetensors file"):
        load_bundle(path)


def test_load_weights_with_missing_and_unexpected_keys(tmp_path):
    path = saved(tmp_path)
    tensors = safetensors.torch.load_file(path / "model.safetensors")
    tensors["extra"] = tensors.pop("head.bias")
    safetensors.torch.save_file(tensors, path / "model.safetensors")
    with pytest.raises(DataError, match=r"does not fit the model in config.yaml(.|\n)*head.bias(.|\n)*extra"):
        load_bundle(path)


def test_load_weights_of_the_wrong_shape(tmp_path):
    path = saved(tmp_path)
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["model"]["hidden_size"] = 5
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DataError, match=r"size mismatch(.|\n)*save the bundle again from the model"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"model": {"name": "gone"}}, r"config\.yaml: unknown model 'gone'.*import the module"),
        ({"model": "test-bundle-lstm"}, r"config\.yaml has no 'model' mapping \(got 'test-bundle-lstm'\)"),
        ({"train": {}}, r"config\.yaml has no 'model' mapping \(got None\); save the bundle again"),
        ({"model": {"name": "test-bundle-lstm", "size": 3}}, r"config\.yaml: model: unknown key 'size'"),
    ],
)
def test_load_a_config_that_names_no_registered_model(tmp_path, config, match):
    path = saved(tmp_path)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=match):
        load_bundle(path)


def test_load_a_config_that_is_not_yaml(tmp_path):
    path = saved(tmp_path)
    (path / "config.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML"):
        load_bundle(path)


def test_load_never_unpickles(tmp_path, monkeypatch):
    path = saved(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must load without unpickling")

    for owner, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(owner, name, refuse)
    assert torch.equal(load_bundle(path).model.scale, torch.full((2,), 3.0))
    assert describe_bundle(path)["model"] == "test-bundle-lstm"


# ---------------------------------------------------------------- describe


def test_describe_bundle_reports_without_building_the_model(tmp_path, monkeypatch):
    path = saved(tmp_path)
    monkeypatch.setattr(bundle_module, "build_model", lambda config: pytest.fail("built the model"))
    info = describe_bundle(path)
    assert info["format_version"] == BUNDLE_FORMAT and info["model"] == "test-bundle-lstm"
    assert info["parameters"] == sum(p.numel() for p in tiny().parameters())
    assert info["model_config"] == {"name": "test-bundle-lstm"}
    assert info["metrics"] == {"val_mse": 0.25}
    assert info["preprocessing"] == ["scaler", "vocab"]
    assert set(info["files"]) == FILES
    assert info["files"]["model.safetensors"] == (path / "model.safetensors").stat().st_size
    assert all(size > 0 for size in info["files"].values())
