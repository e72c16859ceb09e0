"""Tasks: a data pipeline, a model and a way to judge it, for one kind of problem.

A task module offers ``DataConfig``, ``DEFAULT_MODEL``, ``prepare``, ``model_defaults``, ``evaluate``,
``metrics_table`` and ``write_plots``; text tasks add ``model_fixed`` (what the fitted data fixes in
the model config, e.g. the vocabulary size).
"""

from rnnkit.tasks import classify, forecast, language
from rnnkit.tasks.base import Prepared

TASKS = {"forecast": forecast, "classify": classify, "language_model": language}

__all__ = ["TASKS", "Prepared", "classify", "forecast", "language"]
