"""``rnnkit.load``: a trained bundle as a Predictor with its task's verbs.

    predictor = rnnkit.load("runs/seattle_weather/bundle")
    predictor.forecast("recent_weather.csv", horizon=3)    # a DataFrame
    print(predictor.evaluate())                            # the metrics table; a dict of metrics

The CLI's inference commands and the HTTP server are thin shells over this object.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.bundle import load_bundle, read_bundle_config
from rnnkit.tasks import Predictor, get_task


def load(path: str | Path, device: torch.device | str | None = None) -> Predictor:
    """The bundle at ``path`` (a directory ``save_bundle`` or ``rnnkit train`` wrote), its model on
    ``device`` (default: the CPU) in eval mode, with the verbs of its task."""
    task = get_task(read_bundle_config(path).get("task"))  # registers the task's model first
    return task.predictor(load_bundle(path, device))
