"""Using a trained forecaster: forecasts past the end of new data, as a table and a plot, and a
live series followed as its rows arrive.

predictor = rnnkit.load("runs/seattle_weather/bundle")
table = predictor.forecast("recent_weather.csv", horizon=3)   # time, step, temp_max, ..._lower, ..._upper
session = predictor.session()
session.feed(first_rows)   # None until the model's lookback is filled; then as forecast(rows so far)
session.feed(next_row)
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnkit.data.series import Series, calendar_features, future_times, load_series
from rnnkit.data.tables import read_table
from rnnkit.data.windows import SeriesScaling
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.forecast import SeriesDataConfig, code_statics, columns_of, forecasts
from rnnkit.tasks.forecast_combine import combined, end_forecasts

MISSING_OPTION = "missing= (--missing)"  # where a user of a bundle sets the missing-value policy
REFILLED = ("ffill", "interpolate")  # policies whose fill of a row can change as later rows arrive
COLUMN = list | tuple | np.ndarray | pd.Series  # what a fed dict holds per column (else: one row)


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
    horizon = _checked_horizon(horizon, H)
    _refuse_known(config)
    policy = config.missing if missing is None else missing
    all_series = load_series(frame, _columns(config), tuple(config.calendar), policy, MISSING_OPTION)
    code_statics(all_series, preprocessing)
    scalers = _scalers(preprocessing)
    rows, windows = [], []
    for s in all_series:
        if len(s.targets) < L:
            raise DataError(f"series {s.key!r} has {len(s.targets)} rows; the model reads the last {L}")
        times = None if s.times is None else future_times(s.times, H)
        windows.append(_window(_scaled(s, scalers, -L), s, times, config.calendar, scalers.shared[2], H))
        rows.append((s.key, times))
    own = [scalers.of(s)[0] for s in all_series]  # each series' target scaler
    predicted = _combined(preprocessing, all_series, _predict(model, windows, preprocessing, level, own), H)
    return _table(rows, predicted, horizon, config)


def _combined(preprocessing: dict[str, Any], all_series: list[Series], predicted, H: int):
    """``predicted`` averaged with the classical models the forecaster combines (if any), each run
    over the whole of every series (:mod:`rnnkit.tasks.forecast_combine`)."""
    combination = preprocessing.get("combine")
    if not combination or not combination["models"]:
        return predicted
    ends = [end_forecasts(combination, s, H) for s in all_series]  # [series][model]: (H, n_targets)
    return combined(*predicted, [np.stack([e[m] for e in ends]) for m in range(len(combination["models"]))])


def _checked_horizon(horizon: int | None, H: int) -> int:
    horizon = H if horizon is None else horizon
    if horizon < 1:
        raise DataError(f"the horizon must be at least 1 step, got {horizon}")
    if horizon > H:
        raise DataError(
            f"this model forecasts up to {H} steps ahead; asked for {horizon}: "
            f"retrain with data.horizon={horizon}"
        )
    return horizon


def _refuse_known(config: SeriesDataConfig) -> None:
    if config.known_covariates:
        raise DataError(
            f"forecasting past the end of the file needs future values of {config.known_covariates}; "
            "only calendar features are generated for future steps"
        )


def _scalers(preprocessing: dict[str, Any]) -> SeriesScaling:
    return SeriesScaling.from_state(preprocessing)


def _scaled(s: Series, scalers: SeriesScaling, start: int = 0) -> np.ndarray:
    """(N, D): the rows of ``s`` from ``start`` on, scaled, in the model's columns [targets, past, known]
    (by the series' own scalers where each has its own; a new series' are fitted on all its rows)."""
    parts = (s.targets[start:], s.past[start:], s.known[start:])
    scaled = [scaler.transform(x) for scaler, x in zip(scalers.of(s), parts, strict=True)]
    codes = np.tile(s.codes.astype(np.float32), (len(scaled[0]), 1))  # static categoricals: never scaled
    return np.concatenate([*scaled, codes], 1)


def _window(observed: np.ndarray, s: Series, times, calendar: list[str], known_scaler, H: int) -> np.ndarray:
    """(L + H, D): the ``observed`` rows (L, D), then H rows of zeros but for the calendar features
    of the future ``times`` and series ``s``'s static covariates (the only known covariates a
    forecast past the data can have)."""
    n_calendar, n_known = 2 * len(calendar), s.known.shape[1]
    known = calendar_features(times, calendar) if calendar else np.zeros((H, n_calendar), np.float32)
    known = np.concatenate([known, np.tile(s.known[-1:, n_calendar:], (H, 1))], 1)  # + the statics
    unknown = np.zeros((H, observed.shape[1] - n_known - len(s.codes)), np.float32)
    codes = np.tile(s.codes.astype(np.float32), (H, 1))
    return np.concatenate([observed, np.concatenate([unknown, known_scaler.transform(known), codes], 1)], 0)


def _predict(model: torch.nn.Module, windows: list[np.ndarray], preprocessing, level: float, target_scalers):
    """(point, lower, upper) for the windows, each (S, H, n_targets) in the targets' units: window i
    mapped back by ``target_scalers[i]``."""
    inputs = torch.from_numpy(np.stack(windows).astype(np.float32))  # (S, L + H, D)

    def unscale(values: np.ndarray) -> np.ndarray:  # (S, H, n_targets)
        return np.stack(
            [scaler.inverse_transform(v) for scaler, v in zip(target_scalers, values, strict=True)]
        )

    return forecasts(model, inputs, preprocessing, level, unscale=unscale)


def _table(rows: list[tuple], predicted, horizon: int, config: SeriesDataConfig) -> pd.DataFrame:
    """One record per series (``rows``: its key and future times) and step, with the interval if any."""
    point, lower, upper = predicted
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
    """A trained forecaster: ``forecast`` (and ``predict``, the same at the model's horizon), and
    ``session`` to follow a live series."""

    verbs = (*Predictor.verbs, "forecast", "predict", "session")

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

    def session(
        self,
        condition: Any = None,
        horizon: int | None = None,
        level: float = 0.8,
        missing: str | None = None,
    ) -> ForecastSession:
        """One live series fed as its rows arrive: after each feed, ``forecast(all rows fed so far,
        horizon, level, missing)`` (:class:`ForecastSession`). In a bundle of many series (an id
        column), a session follows the series its first rows name; ``condition`` is not used."""
        if condition is not None:
            raise ConfigError(
                "a forecaster takes no condition: a session follows the series named by the id column "
                "of the rows fed to it"
            )
        _refuse_known(self.data_config)
        return ForecastSession(self, horizon, level, missing)

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


class ForecastSession:
    """One series fed as its rows arrive; after each feed, the table ``forecast`` gives for all the
    rows fed so far (None while they are fewer than the model's lookback, or, with a time column,
    than the two timestamps that give the spacing of the future times).

    A forecaster reads a window of exactly ``lookback`` rows, its encoder starting from zero state
    at the window's first row, so a recurrent state carried along an unbounded stream would not
    give the one-shot forecast. The session keeps the last ``lookback`` rows instead, each scaled
    once as it arrives (calendar features included), and runs the model on that window; beside it,
    only the last timestamp and a count of the spacings seen. Rows are checked as ``forecast``
    checks them (their row numbers counted within each feed) and a rejected feed changes nothing.
    Under the ``ffill`` and ``interpolate`` policies a hole's fill can change with later rows, so
    the rows after the last one without holes are kept as they came and filled again at each feed.
    A forecaster combined with ARIMA (``data.combine``) keeps every row fed: each forecast runs the
    ARIMA filter over the whole history, as ``forecast`` does.

        session = predictor.session()
        session.feed({"date": "2024-03-01", "value": 3.2})   # a dict of one row, or of columns
        session.feed(rows)   # a DataFrame or a list of dicts, in the training data's columns
    """

    def __init__(self, predictor: ForecastPredictor, horizon: int | None, level: float, missing) -> None:
        self.model, self.config, self.pre = predictor.model, predictor.data_config, predictor.preprocessing
        self.lookback, self.steps_ahead = self.pre["lookback"], self.pre["horizon"]
        self.horizon, self.level = _checked_horizon(horizon, self.steps_ahead), level
        self.policy = self.config.missing if missing is None else missing
        self.scalers = _scalers(self.pre)
        D = self.model.config.num_features
        self.window = np.zeros((0, D), np.float32)  # (<= lookback, D): the last settled rows, scaled
        self.unsettled = self.window  # (U, D): rows after the last one without holes, when refilled
        self.held: pd.DataFrame | None = None  # raw rows from the last one without holes on
        self.key: str | None = None  # the series followed: the first fed rows'
        self.last_time: pd.Timestamp | None = None
        self.spacings: Counter = Counter()  # time step -> how often it occurred
        self.rows_read = 0
        combination = self.pre.get("combine")
        self.fed: list[pd.DataFrame] | None = [] if combination and combination["models"] else None

    def feed(self, rows, top: int | None = None) -> pd.DataFrame | None:
        """Read ``rows`` (a DataFrame, a dict of columns or of one row, or a list of row dicts) after
        those fed before; the forecast after the last of them, or None while too few were fed
        (``top`` is ignored)."""
        frame = _rows_frame(rows)
        series = self._load(frame)
        self._check_order(series.times)
        settled, self.unsettled, self.held = self._settle(frame, series)
        self.window = np.concatenate([self.window, settled])[-self.lookback :]  # (<= lookback, D)
        if series.times is not None:
            stamps = series.times if self.last_time is None else series.times.insert(0, self.last_time)
            self.spacings.update(np.diff(stamps.to_numpy()))
            self.last_time = series.times[-1]
        self.key, self.rows_read, self.series = series.key, self.rows_read + len(series.targets), series
        if self.fed is not None:  # a combined forecaster's ARIMA runs over the whole history
            self.fed.append(frame)
        ready = self.rows_read >= self.lookback and (self.config.time_column is None or bool(self.spacings))
        return self._forecast() if ready else None

    def _load(self, frame: pd.DataFrame) -> Series:
        """The rows as one checked, filled series: every check ``forecast`` makes, and that it is ours."""
        config = self.config
        found = load_series(frame, _columns(config), tuple(config.calendar), self.policy, MISSING_OPTION)
        code_statics(found, self.pre)
        if len(found) > 1:
            raise DataError(
                f"these rows hold {len(found)} series ({[s.key for s in found][:5]}); a session follows "
                "one: open a session for each series"
            )
        if self.key is not None and found[0].key != self.key:
            raise DataError(
                f"this session follows series {self.key!r}; these rows are of series {found[0].key!r}: "
                "open a session for each series"
            )
        if self.scalers.per_series and found[0].key not in self.scalers.own:
            raise DataError(
                f"series {found[0].key!r} was not in the training data and this model scales each series by "
                "its own rows: a session follows a known series; forecast(rows) a new one from its history"
            )
        return found[0]

    def _check_order(self, times: pd.DatetimeIndex | None) -> None:
        if times is None or self.last_time is None or times[0] > self.last_time:
            return
        where = "" if self.config.id_column is None else f" of series {self.key!r}"
        if times[0] == self.last_time:
            raise DataError(
                f"duplicated timestamps{where}: row 1 ({times[0]}) repeats the last row fed; "
                "aggregate or drop the duplicates"
            )
        raise DataError(
            f"timestamps{where} are not in time order: row 1 ({times[0]}) comes before the last row "
            f"fed ({self.last_time}); feed rows in time order"
        )

    def _settle(self, frame: pd.DataFrame, series: Series):
        """(settled, unsettled, held): the new rows, scaled, whose fill is final; the scaled rows
        whose fill a later row can still change (ffill, interpolate); the raw rows kept to refill them."""
        if self.policy not in REFILLED:  # each row's fill is its own: final at once
            return _scaled(series, self.scalers), self.unsettled, None
        config = self.config
        raw = frame[_used_columns(config)].reset_index(drop=True)
        if series.times is not None:
            raw[config.time_column] = series.times  # parsed once
        held = raw if self.held is None else pd.concat([self.held, raw], ignore_index=True)
        with warnings.catch_warnings():  # the new rows' own read warned already
            warnings.simplefilter("ignore")
            (filled,) = load_series(held, _columns(config), tuple(config.calendar), self.policy)
            code_statics([filled], self.pre)
        values = held[[*config.targets, *config.past_covariates]].apply(pd.to_numeric, errors="coerce")
        complete = np.flatnonzero(values.notna().all(axis=1).to_numpy())  # rows without holes
        if not complete.size:  # no fill is final yet
            return self.window[:0], _scaled(filled, self.scalers), held
        last = complete[-1]  # the fills up to it are final; it settles the rows after it
        first = int(self.held is not None and complete[0] == 0)  # held row 0: settled before
        scaled = _scaled(filled, self.scalers)
        return scaled[first : last + 1], scaled[max(first, last + 1) :], held.iloc[last:]

    def _forecast(self) -> pd.DataFrame:
        times = None
        if self.last_time is not None:  # at the usual spacing, as future_times has it (ties: the shortest)
            usual = pd.Timedelta(min(self.spacings, key=lambda step: (-self.spacings[step], step)))
            times = pd.DatetimeIndex([self.last_time + usual * k for k in range(1, self.steps_ahead + 1)])
        observed = np.concatenate([self.window, self.unsettled])[-self.lookback :]  # (lookback, D)
        window = _window(
            observed, self.series, times, self.config.calendar, self.scalers.shared[2], self.steps_ahead
        )
        predicted = _predict(self.model, [window], self.pre, self.level, [self.scalers.of(self.series)[0]])
        if self.fed is not None:
            predicted = _combined(self.pre, [self._whole()], predicted, self.steps_ahead)
        return _table([(self.key, times)], predicted, self.horizon, self.config)

    def _whole(self) -> Series:
        """Every row fed so far as one filled series (for the classical models of a combined forecaster)."""
        config = self.config
        with warnings.catch_warnings():  # each feed's own read warned already
            warnings.simplefilter("ignore")
            (whole,) = load_series(pd.concat(self.fed), _columns(config), tuple(config.calendar), self.policy)
        return whole


def _columns(config: SeriesDataConfig):
    """The columns a forecast reads: the training columns but the sample weights (training's only)."""
    return replace(columns_of(config), weight=None)


def _used_columns(config: SeriesDataConfig) -> list[str]:
    keys = [c for c in (config.time_column, config.id_column) if c]
    statics = [*config.static_covariates, *config.static_categoricals]
    return [*keys, *config.targets, *config.past_covariates, *config.known_covariates, *statics]


def _rows_frame(rows: Any) -> pd.DataFrame:
    """Fed rows as a table: a DataFrame, a dict of columns (or of one row's values), a list of dicts."""
    if isinstance(rows, dict) and not any(isinstance(v, COLUMN) for v in rows.values()):
        rows = [rows]  # one row
    if isinstance(rows, list | tuple) and all(isinstance(row, dict) for row in rows):
        rows = pd.DataFrame.from_records(list(rows))
    elif isinstance(rows, dict):
        try:
            rows = pd.DataFrame(rows)
        except ValueError as error:  # columns of different lengths
            raise DataError(f"the fed columns do not make a table: {error}") from None
    if not isinstance(rows, pd.DataFrame):
        kind = type(rows).__name__
        raise DataError(
            f"feed rows as a DataFrame, a dict of columns or a list of dicts (one a row), got {kind}"
        )
    if not len(rows):
        raise DataError("feed at least one row")
    return rows
