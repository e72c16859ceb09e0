"""Using a trained forecaster: forecasts past the end of new data, as a table and a plot.

predictor = rnnkit.load("runs/seattle_weather/bundle")
table = predictor.forecast("recent_weather.csv", horizon=3)   # time, step, temp_max, ..._lower, ..._upper
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnkit.data import scaler_from_state
from rnnkit.data.series import calendar_features, future_times, load_series
from rnnkit.data.tables import read_table
from rnnkit.errors import DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.forecast import SeriesDataConfig, columns_of, forecasts


def forecast_frame(
    model: torch.nn.Module,
    frame: pd.DataFrame,
    config: SeriesDataConfig,
    preprocessing: dict[str, Any],
    horizon: int | None = None,
    level: float = 0.8,
    missing: str | None = None,
) -> pd.DataFrame:
    """The next ``horizon`` steps after the end of every series in ``frame``, in a long table;
    holes in ``frame`` are filled by ``missing`` (default: the training config's policy)."""
    H, L = preprocessing["horizon"], preprocessing["lookback"]
    horizon = H if horizon is None else horizon
    if horizon < 1:
        raise DataError(f"the horizon must be at least 1 step, got {horizon}")
    if horizon > H:
        raise DataError(
            f"this model forecasts up to {H} steps ahead; asked for {horizon}: "
            f"retrain with data.horizon={horizon}"
        )
    if config.known_covariates:
        raise DataError(
            f"forecasting past the end of the file needs future values of {config.known_covariates}; "
            "only calendar features are generated for future steps"
        )
    policy = config.missing if missing is None else missing
    all_series = load_series(
        frame, columns_of(config), tuple(config.calendar), policy, "missing= (--missing)"
    )
    scalers = [scaler_from_state(preprocessing["scalers"][f]) for f in ("targets", "past", "known")]
    rows, windows = [], []
    for s in all_series:
        if len(s.targets) < L:
            raise DataError(f"series {s.key!r} has {len(s.targets)} rows; the model reads the last {L}")
        times = None if s.times is None else future_times(s.times, H)
        known = np.zeros((H, s.known.shape[1]), np.float32)
        if config.calendar:
            known = calendar_features(times, config.calendar)
        observed = np.concatenate(
            [scalers[0].transform(s.targets[-L:]), scalers[1].transform(s.past[-L:])], 1
        )
        future = np.concatenate(
            [np.zeros((H, observed.shape[1]), np.float32), scalers[2].transform(known)], 1
        )
        past_known = scalers[2].transform(s.known[-L:])
        windows.append(np.concatenate([np.concatenate([observed, past_known], 1), future], 0))  # (L + H, D)
        rows.append((s.key, times))
    point, lower, upper = forecasts(
        model, torch.from_numpy(np.stack(windows).astype(np.float32)), preprocessing, level
    )
    records = []
    for i, (key, times) in enumerate(rows):
        for h in range(horizon):
            record = {"series": key} if config.id_column else {}
            record.update({"time": None if times is None else times[h], "step": h + 1})
            for j, name in enumerate(config.targets):
                record[name] = point[i, h, j]
                if lower is not None:
                    record[f"{name}_lower"], record[f"{name}_upper"] = lower[i, h, j], upper[i, h, j]
            records.append(record)
    table = pd.DataFrame.from_records(records)
    return table.drop(columns="time") if config.time_column is None else table


class ForecastPredictor(Predictor):
    """A trained forecaster: ``forecast`` (and ``predict``, the same at the model's horizon)."""

    verbs = (*Predictor.verbs, "forecast", "predict")

    def forecast(
        self,
        data: pd.DataFrame | str | Path,
        horizon: int | None = None,
        level: float = 0.8,
        missing: str | None = None,
    ) -> pd.DataFrame:
        """The next ``horizon`` steps (default: the model's) after the end of every series in
        ``data`` (a table in the training data's columns, or a file holding one), with the
        ``level`` interval for probabilistic models: one row per series and step. Missing values
        are an error unless ``missing`` ("ffill", "interpolate", "zero"; default: the training
        config's ``data.missing``) fills them."""
        frame = data if isinstance(data, pd.DataFrame) else read_table(data)
        config, pre = self.data_config, self.preprocessing
        return forecast_frame(self.model, frame, config, pre, horizon, level, missing)

    def predict(self, inputs: pd.DataFrame | str | Path, **options) -> pd.DataFrame:
        """``forecast`` at the model's horizon (or ``horizon=``)."""
        if isinstance(inputs, list | tuple):
            raise DataError("a forecaster predicts from a table: pass a file (rnnkit predict BUNDLE FILE)")
        return self.forecast(inputs, **options)

    def plot(
        self, history: pd.DataFrame | str | Path, table: pd.DataFrame, path: str | Path, level: float = 0.8
    ) -> Path:
        """A PNG of the end of ``history`` and the forecast ``table`` made from it (the first target
        of the first series), with the ``level`` interval the table was made with."""
        from rnnkit import plots

        frame = history if isinstance(history, pd.DataFrame) else read_table(history)
        config = self.data_config
        target, time = config.targets[0], config.time_column
        if config.id_column:  # the first series alone
            first = frame[config.id_column].iloc[0]
            frame = frame[frame[config.id_column] == first]
            table = table[table["series"] == str(first)]
        frame = frame.tail(3 * self.preprocessing["lookback"])
        x_history = pd.to_datetime(frame[time]) if time else frame.index
        x = table["time"] if time else range(frame.index[-1] + 1, frame.index[-1] + 1 + len(table))
        band = (table[f"{target}_lower"], table[f"{target}_upper"]) if f"{target}_lower" in table else None
        return plots.plot_forecast(
            (x_history, frame[target]),
            None,
            {"forecast": table[target]},
            x,
            path,
            band=band,
            band_label=f"{level:.0%} interval",
            title=f"{target}: forecast",
            ylabel=target,
        )
