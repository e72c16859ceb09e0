"""Sliding windows over a time series, and a split that keeps time order."""

from __future__ import annotations

import numpy as np

from rnnkit.errors import DataError


def sliding_windows(
    series: np.ndarray, lookback: int, horizon: int = 1, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """series (N,) or (N, F) -> inputs (S, lookback, F) and targets (S, horizon, F).

    Window s reads steps [s*stride, s*stride + lookback) and its target is the ``horizon`` steps
    right after it, so no target ever lies inside its own input.
    """
    values = np.asarray(series)
    values = values[:, None] if values.ndim == 1 else values  # (N, F)
    if values.ndim != 2:
        raise DataError(f"series must be (N,) or (N, F), got shape {np.shape(series)}")
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values).any(axis=1))[:5].tolist()
        raise DataError(f"series has NaN at rows {rows}...: fill or drop them before windowing")
    for name, v in (("lookback", lookback), ("horizon", horizon), ("stride", stride)):
        if v < 1:
            raise DataError(f"{name} must be >= 1, got {v}")
    n = len(values) - lookback - horizon + 1
    if n < 1:
        raise DataError(
            f"series of {len(values)} steps is too short for lookback {lookback} + horizon {horizon}"
        )
    starts = np.arange(0, n, stride)  # (S,)
    inputs = values[starts[:, None] + np.arange(lookback)]  # (S, lookback, F)
    targets = values[starts[:, None] + lookback + np.arange(horizon)]  # (S, horizon, F)
    return inputs, targets


def split_by_time(n: int, train_fraction: float) -> tuple[slice, slice]:
    """Slices for the first ``train_fraction`` of n items and the rest, in time order, never shuffled."""
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    cut = round(n * train_fraction)
    if cut < 1 or cut >= n:
        raise DataError(f"{n} items cannot be split {train_fraction:.0%}/{1 - train_fraction:.0%} in time")
    return slice(0, cut), slice(cut, n)
