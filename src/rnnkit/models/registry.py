"""Task models by name, so a saved config rebuilds its model without unpickling code.

    @register_model("forecaster", ForecasterConfig)
    class Forecaster(nn.Module): ...

    model = build_model({"name": "forecaster", "hidden_size": 32, ...})

Each model class takes one argument, its config (a :class:`rnnkit.config.Config` whose ``name`` field
is the registry name), and keeps it as ``model.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from rnnkit.config import Config, validate
from rnnkit.errors import ConfigError, unknown_name

_MODELS: dict[str, tuple[type[Config], type[nn.Module]]] = {}


def register_model(name: str, config_class: type[Config]):
    """Class decorator: make ``name`` build this model from a ``config_class``."""

    def decorate(model_class: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS and _MODELS[name][1] is not model_class:
            raise ConfigError(f"model name {name!r} is already registered to {_MODELS[name][1].__name__}")
        _MODELS[name] = (config_class, model_class)
        return model_class

    return decorate


def model_names() -> list[str]:
    return sorted(_MODELS)


def config_class(name: object) -> type[Config]:
    """The config class registered for the model ``name``."""
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name][0]


def model_config(data: Mapping[str, Any] | Config) -> Config:
    """Validate a model config (a mapping with a ``name`` key, or a config object)."""
    if isinstance(data, Config):
        return data
    name = data.get("name")
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return validate(_MODELS[name][0], data, source="model")


def build_model(config: Mapping[str, Any] | Config) -> nn.Module:
    """The registered model for ``config.name``, built from the validated config."""
    config = model_config(config)
    return _MODELS[config.name][1](config)
