"""Task models: each file holds a <Task>Config and its model; registry.py maps names to both."""

from rnnkit.models.forecaster import Forecaster, ForecasterConfig
from rnnkit.models.registry import build_model, model_config, model_names, register_model

__all__ = ["Forecaster", "ForecasterConfig", "build_model", "model_config", "model_names", "register_model"]
