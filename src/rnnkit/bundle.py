"""A trained model as one directory that rebuilds it without unpickling code.

    save_bundle("runs/sine/bundle", model, run_config, preprocessing={"scaler": ...}, metrics={...})
    bundle = load_bundle("runs/sine/bundle", device="cuda")  # bundle.model: loaded, in eval mode

    bundle/
      bundle.json         format_version, rnnkit_version, model name, parameter count, created (UTC)
      config.yaml         the resolved run config; its ``model`` section rebuilds the model (registry)
      model.safetensors   the model's state_dict
      preprocessing.json  what turns raw input into model input (scaler, vocabulary, ...)
      metrics.json        the evaluation results

Loading reads only safetensors, JSON and YAML (safe_load), so it runs no code from the bundle. Saving
fills a hidden sibling directory, then renames it into place: ``path`` never holds half a bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
import yaml
from torch import nn

from rnnkit.config import Config, read_yaml
from rnnkit.errors import ConfigError, DataError
from rnnkit.files import fsync, replace_directory
from rnnkit.models import build_model, model_config
from rnnkit.version import __version__

BUNDLE_FORMAT = 1
INFO, CONFIG, WEIGHTS = "bundle.json", "config.yaml", "model.safetensors"
PREPROCESSING, METRICS = "preprocessing.json", "metrics.json"
FILES = (INFO, CONFIG, WEIGHTS, PREPROCESSING, METRICS)


@dataclass
class Bundle:
    """A loaded bundle; ``info`` is the contents of bundle.json."""

    path: Path
    config: dict
    model: nn.Module
    preprocessing: dict
    metrics: dict
    info: dict


def save_bundle(
    path: str | Path,
    model: nn.Module,
    config: Mapping[str, Any],
    preprocessing: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its run ``config`` (whose ``model`` section names a registered model)."""
    path = Path(path)
    texts = _texts(model, config, preprocessing or {}, metrics or {})  # all checks before touching disk
    if path.exists() and not (path / INFO).is_file() and not (path.is_dir() and not any(path.iterdir())):
        raise DataError(f"{path} exists and is not an rnnkit bundle; remove it or pick another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        for name, text in texts.items():
            (new / name).write_text(text)
        safetensors.torch.save_file(_cpu_state(model), new / WEIGHTS)
        for file in [*new.iterdir(), new]:
            fsync(file)
        replace_directory(new, path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return path


def load_bundle(path: str | Path, device: torch.device | str | None = None) -> Bundle:
    """Rebuild a bundle's model from its config, load the weights, move it to ``device``, eval()."""
    path = Path(path)
    info = _read_info(path)
    config = read_yaml(path / CONFIG)
    section = config.get("model")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path / CONFIG} has no 'model' mapping (got {section!r}); save the bundle again")
    try:
        model = build_model(section)
    except ConfigError as error:
        raise ConfigError(f"{path / CONFIG}: {error} (import the module that registers it)") from None
    _load_weights(path / WEIGHTS, model)
    if device is not None:
        model.to(device)
    model.eval()
    return Bundle(path, config, model, _read_json(path, PREPROCESSING), _read_json(path, METRICS), info)


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    """config.yaml of a complete bundle this rnnkit can read (no model is built)."""
    path = Path(path)
    _read_info(path)
    return read_yaml(path / CONFIG)


def describe_bundle(path: str | Path) -> dict[str, Any]:
    """bundle.json plus model config, metrics, preprocessing keys and file sizes; builds no model."""
    path = Path(path)
    return {
        **_read_info(path),
        "model_config": read_yaml(path / CONFIG).get("model"),
        "metrics": _read_json(path, METRICS),
        "preprocessing": sorted(_read_json(path, PREPROCESSING)),
        "files": {file.name: file.stat().st_size for file in sorted(path.iterdir()) if file.is_file()},
    }


def _texts(model: nn.Module, config: Mapping, preprocessing: Mapping, metrics: Mapping) -> dict[str, str]:
    """The text files of a bundle, once the config is known to rebuild this model."""
    section = config.get("model") if isinstance(config, Mapping) else None
    if not isinstance(section, Mapping):
        raise ConfigError(f"the run config needs a 'model' mapping with a 'name', got {config!r}")
    expected, own = model_config(section), getattr(model, "config", None)
    if isinstance(own, Config) and own.model_dump(mode="json") != expected.model_dump(mode="json"):
        raise ConfigError(f"config's model section {dict(section)} does not describe the model ({own!r})")
    info = {
        "format_version": BUNDLE_FORMAT,
        "rnnkit_version": __version__,
        "model": expected.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        plain = json.loads(json.dumps(dict(config)))  # only JSON data; tuples become lists
        return {
            CONFIG: yaml.safe_dump(plain, sort_keys=False),
            PREPROCESSING: json.dumps(dict(preprocessing), indent=2),
            METRICS: json.dumps(dict(metrics), indent=2),
            INFO: json.dumps(info, indent=2),
        }
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config, preprocessing and metrics must be plain JSON data: {error}") from None


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict as contiguous CPU tensors; safetensors refuses tensors that share storage."""
    tensors, seen = {}, set()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if storage in seen else tensor  # tied weights, views of one buffer
        seen.add(storage)
    return tensors


def _read_info(path: Path) -> dict[str, Any]:
    """bundle.json, once ``path`` is known to be a complete bundle this rnnkit can read."""
    if not path.is_dir():
        raise DataError(f"bundle {str(path)!r} does not exist; pass the directory save_bundle wrote")
    if not (path / INFO).is_file():
        raise DataError(f"{path} is not an rnnkit bundle (no {INFO}); pass a directory save_bundle wrote")
    info = _read_json(path, INFO)
    version = info.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{path / INFO} has no valid format_version ({version!r}); save the bundle again")
    if version > BUNDLE_FORMAT:
        newer = f"made by a newer rnnkit ({info.get('rnnkit_version')}); this one reads {BUNDLE_FORMAT}"
        raise DataError(f"{path} has bundle format {version}, {newer}: upgrade rnnkit")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise DataError(f"bundle {path} is missing {missing}; copy the whole directory or save it again")
    return info


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((path / name).read_text())
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DataError(f"{path / name} does not hold a JSON object; the bundle is damaged, save it again")
    return data


def _load_weights(file: Path, model: nn.Module) -> None:
    """Load model.safetensors into ``model`` strictly; any key mismatch or wrong shape is a DataError."""
    try:
        tensors = safetensors.torch.load_file(file)
    except (safetensors.SafetensorError, OSError) as error:
        raise DataError(f"{file} is not a valid safetensors file ({error}); save the bundle again") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        fix = "save the bundle again from the model and the config it was built from"
        raise DataError(f"{file} does not fit the model in {CONFIG}: {error}; {fix}") from None
