"""Forecast metrics (over torchmetrics where it has them) and the baselines every model faces.

Errors are measured in the series' own units. MASE divides the MAE by the in-sample MAE of the
seasonal naive forecast on the training part (Hyndman & Koehler 2006); interval coverage is the
share of actual values inside [lower, upper].
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    symmetric_mean_absolute_percentage_error,
)

from rnnkit.errors import DataError

BASELINES = ("last_value", "seasonal_naive", "drift", "mean")


def forecast_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    mase_scale: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """MAE, RMSE, MAPE (%), sMAPE (%), MASE and, given bounds, interval coverage (%)."""
    y = torch.as_tensor(np.ravel(actual), dtype=torch.float64)
    yhat = torch.as_tensor(np.ravel(predicted), dtype=torch.float64)
    mae = float(mean_absolute_error(yhat, y))
    metrics = {
        "MAE": mae,
        "RMSE": float(mean_squared_error(yhat, y, squared=False)),
        "MAPE": 100 * float(mean_absolute_percentage_error(yhat, y)),
        "sMAPE": 100 * float(symmetric_mean_absolute_percentage_error(yhat, y)),
        "MASE": mae / mase_scale,
    }
    if lower is not None and upper is not None:
        metrics["coverage"] = 100 * float(np.mean((actual >= lower) & (actual <= upper)))
    return metrics


def seasonal_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (lag ``season``) over the training values (N,)."""
    if len(train) <= season:
        raise DataError(
            f"MASE needs more than season={season} training values, got {len(train)}; lower the season"
        )
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    return scale if scale > 0 else 1.0


def baseline(name: str, series: np.ndarray, origins: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """Forecasts (S, H) of a baseline from the history ``series[: origin + 1]`` of each origin.

    last_value: the last observation; seasonal_naive: the observation one season before each target
    step (Hyndman & Athanasopoulos, sec. 5.2); drift: the line through the first and last
    observations, extended; mean: the mean of the whole history.
    """
    steps = np.arange(1, horizon + 1)  # (H,)
    last = series[origins][:, None]  # (S, 1)
    if name == "last_value":
        return np.repeat(last, horizon, 1)
    if name == "seasonal_naive":
        back = season * np.ceil(steps / season).astype(int)  # (H,) whole seasons back from each target
        index = origins[:, None] + steps - back  # (S, H)
        if (index < 0).any():
            raise DataError(
                f"seasonal naive needs a season ({season}) of history before every forecast origin"
            )
        return series[index]
    if name == "drift":
        slope = (last[:, 0] - series[0]) / np.maximum(origins, 1)  # (S,)
        return last + slope[:, None] * steps
    if name == "mean":
        sums = np.cumsum(series)[origins]
        return np.repeat((sums / (origins + 1))[:, None], horizon, 1)
    raise DataError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
