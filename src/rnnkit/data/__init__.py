"""Data: batches, windows over series, scalers and synthetic series."""

from rnnkit.data.batch import Batch, Stream, stack_pairs
from rnnkit.data.scalers import (
    MinMaxScaler,
    RobustScaler,
    Scaler,
    StandardScaler,
    make_scaler,
    scaler_from_state,
)
from rnnkit.data.synthetic import noisy_sine, seasonal_temperature, seasonal_temperature_frame
from rnnkit.data.windows import sliding_windows, split_by_time

__all__ = [
    "Batch",
    "MinMaxScaler",
    "RobustScaler",
    "Scaler",
    "StandardScaler",
    "Stream",
    "make_scaler",
    "noisy_sine",
    "scaler_from_state",
    "seasonal_temperature",
    "seasonal_temperature_frame",
    "sliding_windows",
    "split_by_time",
    "stack_pairs",
]
