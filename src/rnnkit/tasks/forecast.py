"""Forecasting: a series from a CSV file or a synthetic generator, windowed, scaled, split in time.

The scaler is fitted on the values the training windows see and nothing later; the test windows
are the last ``test_fraction`` of all windows, in time order, never shuffled across time.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import TensorDataset

from rnnkit.config import Config
from rnnkit.data import make_scaler, noisy_sine, scaler_from_state, seasonal_temperature, sliding_windows
from rnnkit.errors import DataError
from rnnkit.tasks.base import Prepared

GENERATORS = {"sine": noisy_sine, "seasonal_temperature": seasonal_temperature}


class SeriesDataConfig(Config):
    """One series: ``path`` (CSV with a ``target`` column) or a ``synthetic`` generator."""

    kind: Literal["series"] = "series"
    path: str | None = None
    target: str = "value"
    synthetic: Literal["sine", "seasonal_temperature"] | None = None
    synthetic_options: dict[str, float | int] = Field(default_factory=dict, description="generator arguments")
    lookback: int = Field(10, gt=0)
    horizon: int = Field(1, gt=0)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.0, ge=0, lt=1, description="of the training windows, the latest")
    scaler: Literal["none", "minmax", "standard", "robust"] = "none"

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("set exactly one of data.path (a CSV file) and data.synthetic")
        return self


def load_series(config: SeriesDataConfig) -> np.ndarray:
    """The raw series (N,) float32."""
    if config.synthetic is not None:
        return GENERATORS[config.synthetic](**config.synthetic_options)
    return read_csv_column(config.path, config.target)


def read_csv_column(path: str | Path, column: str) -> np.ndarray:
    """One numeric column of a CSV file with a header, as float32; empty or bad cells are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise DataError(f"{path} has no column {column!r}; its columns are {reader.fieldnames}")
        cells = [row[column] for row in reader]
    values = np.array([_number(cell) for cell in cells], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        rows = (bad[:5] + 2).tolist()  # file line numbers: header is line 1
        raise DataError(
            f"{path}: column {column!r} is empty or not a number on lines {rows}: fill or drop them"
        )
    if values.size == 0:
        raise DataError(f"{path} has no rows")
    return values


def _number(cell: str) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return math.nan


def prepare(config: SeriesDataConfig) -> Prepared:
    series = load_series(config)
    L, H = config.lookback, config.horizon
    n_windows = len(series) - L - H + 1
    n_test = max(1, round(n_windows * config.test_fraction))
    n_train = n_windows - n_test
    n_val = round(n_train * config.validation_fraction)
    if n_windows < 2 or n_train - n_val < 1:
        raise DataError(
            f"a series of {len(series)} steps gives {max(n_windows, 0)} windows of lookback {L} "
            f"+ horizon {H}: too few to split; shorten the windows or give more data"
        )
    scaler = make_scaler(config.scaler).fit(series[: n_train - n_val + L + H - 1])  # training targets only
    inputs, targets = sliding_windows(scaler.transform(series), L, H)  # (S, L, 1), (S, H, 1)
    parts = {
        "train": slice(0, n_train - n_val),
        "validation": slice(n_train - n_val, n_train),
        "test": slice(n_train, n_windows),
    }
    sets = {
        k: TensorDataset(torch.from_numpy(inputs[s]), torch.from_numpy(targets[s])) for k, s in parts.items()
    }
    return Prepared(
        train=sets["train"],
        validation=sets["validation"] if n_val else None,
        test=sets["test"],
        preprocessing={"scaler": scaler.state_dict(), "lookback": L, "horizon": H, "target": config.target},
        model_defaults={"input_size": 1, "output_size": 1, "horizon": H},
    )


DataConfig = SeriesDataConfig
DEFAULT_MODEL = "forecaster"


def dataset_from_file(path: str | Path, preprocessing: dict[str, Any]) -> TensorDataset:
    """Every window of the ``target`` column of a CSV file, scaled as in training (for evaluation)."""
    scaler = scaler_from_state(preprocessing["scaler"])
    series = scaler.transform(read_csv_column(path, preprocessing["target"]))
    inputs, targets = sliding_windows(series, preprocessing["lookback"], preprocessing["horizon"])
    return TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets))


def evaluate(
    model: torch.nn.Module, dataset: TensorDataset, preprocessing: dict[str, Any]
) -> dict[str, float]:
    """MAE, RMSE and MSE of the model and of the last-value baseline, in the series' own units."""
    scaler = scaler_from_state(preprocessing["scaler"])
    inputs, targets = dataset.tensors
    device = next(model.parameters()).device
    predicted = model.predict(inputs.to(device)).cpu().numpy()  # (S, H, 1)
    unscale = lambda a: scaler.inverse_transform(a.reshape(-1, 1)).reshape(a.shape)  # noqa: E731
    actual = unscale(targets.numpy())
    last = np.repeat(inputs.numpy()[:, -1:, :], actual.shape[1], axis=1)  # (S, H, 1)
    metrics: dict[str, float] = {"windows": len(actual)}
    for name, guess in (("model", unscale(predicted)), ("last_value", unscale(last))):
        error = guess - actual
        metrics[f"{name}_mae"] = float(np.abs(error).mean())
        metrics[f"{name}_rmse"] = float(np.sqrt((error**2).mean()))
    return metrics


def metrics_table(metrics: dict[str, float]) -> str:
    lines = [f"test windows: {metrics['windows']}", f"  {'':<14}{'MAE':>10}{'RMSE':>10}"]
    for name, label in (("model", "model"), ("last_value", "last value")):
        lines.append(f"  {label:<14}{metrics[f'{name}_mae']:>10.4f}{metrics[f'{name}_rmse']:>10.4f}")
    return "\n".join(lines)


def forecast(model: torch.nn.Module, series: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """The next ``horizon`` values after the last ``lookback`` values of ``series`` (N,)."""
    lookback = preprocessing["lookback"]
    if len(series) < lookback:
        raise DataError(f"the input has {len(series)} values; the model reads the last {lookback}")
    scaler = scaler_from_state(preprocessing["scaler"])
    window = scaler.transform(series[-lookback:].astype(np.float32))  # (L,)
    inputs = torch.from_numpy(window).view(1, lookback, 1).to(next(model.parameters()).device)
    predicted = model.predict(inputs).cpu().numpy().reshape(-1, 1)  # (H, 1)
    return scaler.inverse_transform(predicted)[:, 0]
