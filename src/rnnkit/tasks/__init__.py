"""Tasks: a data pipeline, a model and a way to judge it, for one kind of problem.

Every task is a :class:`Task` registered under its name. The built-in ones are imported when first
asked for (so ``rnnkit predict`` on a classifier never imports forecasting code); a package can add
its own with :func:`register_task`, or by an entry point in the ``rnnkit.tasks`` group that names
a module registering it (found when a config or bundle asks for that name).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from rnnkit.errors import ConfigError, unknown_name
from rnnkit.tasks.base import ModelKeys, Predictor, Prelude, Prepared, Report, Task

_BUILT_IN = {
    "algorithmic": "rnnkit.tasks.algorithmic",
    "anomaly": "rnnkit.tasks.anomaly",
    "caption": "rnnkit.tasks.caption",
    "forecast": "rnnkit.tasks.forecast",
    "classify": "rnnkit.tasks.classify",
    "classify_series": "rnnkit.tasks.classify_series",
    "language_model": "rnnkit.tasks.language",
    "music": "rnnkit.tasks.music",
    "next_item": "rnnkit.tasks.next_item",
    "rl": "rnnkit.tasks.rl",
    "seq2seq": "rnnkit.tasks.seq2seq",
    "speech": "rnnkit.tasks.speech",
    "tag": "rnnkit.tasks.tagging",
}
BUILT_IN_TASKS = tuple(sorted(_BUILT_IN))
_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available under ``task.name`` to configs, bundles, the CLI and ``rnnkit.load``."""
    if not isinstance(task, Task):
        raise ConfigError(f"register_task takes a Task instance, got {task!r}")
    known = _TASKS.get(task.name)
    if known is not None and type(known) is not type(task):
        raise ConfigError(f"task name {task.name!r} is already registered to {type(known).__name__}")
    _TASKS[task.name] = task
    return task


def get_task(name: object) -> Task:
    """The task registered as ``name``, importing a built-in or entry-point task on first use."""
    if isinstance(name, str) and name not in _TASKS:
        if name in _BUILT_IN:
            importlib.import_module(_BUILT_IN[name])
        else:
            for point in entry_points(group="rnnkit.tasks", name=name):
                point.load()
    if name not in _TASKS:
        raise unknown_name("task", name, task_names())
    return _TASKS[name]


def task_names() -> list[str]:
    return sorted({*_BUILT_IN, *_TASKS, *(p.name for p in entry_points(group="rnnkit.tasks"))})


__all__ = [
    "BUILT_IN_TASKS",
    "ModelKeys",
    "Predictor",
    "Prelude",
    "Prepared",
    "Report",
    "Task",
    "get_task",
    "register_task",
    "task_names",
]
