"""Tasks: a data pipeline, a model and a way to judge it, for one kind of problem."""

from rnnkit.tasks import forecast
from rnnkit.tasks.base import Prepared

TASKS = {"forecast": forecast}

__all__ = ["TASKS", "Prepared", "forecast"]
