"""Time series from tables: checked, filled, given calendar features, split in time, scaled, windowed.

A table holds one series, or many stacked and keyed by an ``id`` column, with a time column, one or
more targets, past covariates (observed up to now only) and known covariates (known ahead, such as
calendar features). Windows are laid out for :class:`rnnkit.models.Forecaster`:

    inputs (S, L + H, D), D = targets + past + known columns, in that order. Rows 0..L-1 are the
    observed window; rows L..L+H-1 are the horizon, where only the known columns are filled and the
    rest is zero, so no future target or past covariate can leak in.
    targets (S, H, number of targets).

Each window belongs to the part (train, validation, test) that holds all of its target rows; the
scalers are fitted on the training part's rows only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.data.batch import Batch, stack_pairs
from rnnkit.data.scalers import Scaler, scaler_from_state
from rnnkit.data.tables import require_columns
from rnnkit.errors import DataError

CALENDAR = {  # name -> (function of a DatetimeIndex giving a phase in [0, 1), column prefix)
    "day_of_week": lambda t: t.day_of_week / 7,
    "day_of_year": lambda t: (t.day_of_year - 1) / 365.25,
    "month": lambda t: (t.month - 1) / 12,
    "hour": lambda t: t.hour / 24,
}
FILLS = ("error", "ffill", "interpolate", "zero")


@dataclass(frozen=True)
class Columns:
    time: str | None
    targets: tuple[str, ...]
    past: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    id: str | None = None
    weight: str | None = None  # each row's sample weight: how often a window ending there is drawn
    static: tuple[str, ...] = ()  # numeric columns constant within a series: known covariates too
    categorical: tuple[str, ...] = ()  # categorical columns constant within a series: embedded


@dataclass
class Series:
    """One checked series: values as float32 arrays over its rows, and its timestamps."""

    key: str
    times: pd.DatetimeIndex | None
    targets: np.ndarray  # (N, n_targets)
    past: np.ndarray  # (N, n_past)
    known: np.ndarray  # (N, n_known + calendar)
    weights: np.ndarray | None = None  # (N,) sample weights, when the data has them
    categories: tuple[str, ...] = ()  # the series' value of each static categorical column
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their codes (the task's)


def load_series(
    frame: pd.DataFrame,
    columns: Columns,
    calendar: tuple[str, ...] = (),
    missing: str = "error",
    missing_option: str = "data.missing",
) -> list[Series]:
    """Check and split a table into its series (one per id). Errors name the rows and the fix
    (``missing_option`` is where the caller sets the missing-value policy)."""
    used = [c for c in (columns.time, columns.id, columns.weight) if c]
    used += [*columns.targets, *columns.past, *columns.known, *columns.static, *columns.categorical]
    require_columns(frame, used, source="the data")
    if calendar and columns.time is None:
        raise DataError("calendar features need data.time_column")
    unknown = sorted(set(calendar) - set(CALENDAR))
    if unknown:
        raise DataError(f"unknown calendar features {unknown}; expected some of {sorted(CALENDAR)}")
    frame = frame.reset_index(drop=True)
    if columns.time:
        frame[columns.time] = _parse_times(frame[columns.time], columns.time)
    groups = frame.groupby(columns.id, sort=False) if columns.id else [("series", frame)]
    return [_one_series(str(key), part, columns, calendar, missing, missing_option) for key, part in groups]


def _parse_times(values: pd.Series, name: str) -> pd.Series:
    times = pd.to_datetime(values, errors="coerce")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"time column {name!r} has values that are not dates on rows {(bad[:5] + 1).tolist()}"
        )
    return times


def _one_series(
    key: str, part: pd.DataFrame, columns: Columns, calendar, missing: str, option: str
) -> Series:
    where = "" if columns.id is None else f" of series {key!r}"
    times = None
    if columns.time:
        times = pd.DatetimeIndex(part[columns.time])
        _check_times(times, part.index, where)
    values = part[[*columns.targets, *columns.past, *columns.known]].apply(pd.to_numeric, errors="coerce")
    values = _fill(values, missing, where, option)
    n_t, n_p = len(columns.targets), len(columns.past)
    array = values.to_numpy(np.float32)
    known = array[:, n_t + n_p :]
    if calendar:
        known = np.concatenate([known, calendar_features(times, calendar)], 1)
    if columns.static:  # known on every row, the horizon's included
        statics = [_constant(part[c], c, where, numeric=True) for c in columns.static]
        known = np.concatenate([known, np.tile(np.asarray(statics, np.float32), (len(part), 1))], 1)
    weights = None if columns.weight is None else _weights(part[columns.weight], columns.weight, where)
    categories = tuple(str(_constant(part[c], c, where)) for c in columns.categorical)
    return Series(key, times, array[:, :n_t], array[:, n_t : n_t + n_p], known, weights, categories)


def _constant(column: pd.Series, name: str, where: str, numeric: bool = False):
    """The one value a static column holds in a series; a DataError naming the rows where it changes."""
    values = pd.to_numeric(column, errors="coerce") if numeric else column
    if values.isna().any():
        rows = (column.index[np.flatnonzero(values.isna().to_numpy())[:5]] + 1).tolist()
        kind = "numeric " if numeric else ""
        raise DataError(f"static {kind}column {name!r}{where} is missing or not a number on rows {rows}")
    changed = np.flatnonzero((values != values.iloc[0]).to_numpy())
    if changed.size:
        raise DataError(
            f"static column {name!r}{where} must hold one value per series: {values.iloc[0]!r} on its first "
            f"row, {values.iloc[changed[0]]!r} on row {column.index[changed[0]] + 1}; make it a known or "
            "past covariate if it changes"
        )
    return values.iloc[0]


def _weights(column: pd.Series, name: str, where: str) -> np.ndarray:
    """A sample-weight column as (N,) float64, refusing missing, negative and infinite values."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise DataError(
            f"sample weights {name!r}{where} must be numbers >= 0; rows "
            f"{(column.index[bad[:5]] + 1).tolist()} hold {column.iloc[bad[:3]].tolist()}: fix them, or "
            "drop data.sample_weight"
        )
    return values


def calendar_features(times: pd.DatetimeIndex, names) -> np.ndarray:
    """(N, 2C) float32: sin then cos of each feature's phase over its cycle (week, year, ...)."""
    phases = np.stack([np.asarray(CALENDAR[name](times), np.float64) for name in names], 1)  # (N, C)
    angles = 2 * np.pi * phases
    return np.concatenate([np.sin(angles), np.cos(angles)], 1).astype(np.float32)


def future_times(times: pd.DatetimeIndex, steps: int) -> pd.DatetimeIndex:
    """The ``steps`` timestamps after the last, at the series' usual spacing."""
    if len(times) < 2:
        raise DataError("forecast timestamps need at least two past timestamps to infer the spacing")
    usual = pd.Series(np.diff(times.to_numpy())).mode().iloc[0]
    return pd.DatetimeIndex([times[-1] + usual * k for k in range(1, steps + 1)])


def _check_times(times: pd.DatetimeIndex, rows: pd.Index, where: str) -> None:
    steps = np.diff(times.to_numpy())  # timedelta64
    zero = np.timedelta64(0, "s")
    backwards = np.flatnonzero(steps < zero)
    if backwards.size:
        i = backwards[0]
        raise DataError(
            f"timestamps{where} are not in time order: row {rows[i + 1] + 1} ({times[i + 1]}) "
            f"comes after row {rows[i] + 1} ({times[i]}); sort the table by time"
        )
    repeated = np.flatnonzero(steps == zero)
    if repeated.size:
        stamps = sorted({str(times[i]) for i in repeated[:5]})
        raise DataError(
            f"duplicated timestamps{where}: {stamps} ({repeated.size} repeats); "
            "aggregate or drop the duplicates"
        )
    if steps.size:
        usual = pd.Series(steps).mode().iloc[0]
        gaps = np.flatnonzero(steps != usual)
        if gaps.size:
            warnings.warn(
                f"irregular timestamps{where}: {gaps.size} steps differ from the usual "
                f"{pd.Timedelta(usual)}, first after {times[gaps[0]]}",
                stacklevel=3,
            )


def _fill(values: pd.DataFrame, missing: str, where: str, option: str) -> pd.DataFrame:
    if missing not in FILLS:
        raise DataError(f"unknown missing-value policy {missing!r}; expected one of {list(FILLS)}")
    holes = values.isna()
    if not holes.any().any():
        return values
    if missing == "error":
        rows = np.flatnonzero(holes.any(axis=1).to_numpy())
        cols = [c for c in values.columns if holes[c].any()]
        raise DataError(
            f"missing or non-numeric values{where} in {cols} on rows {(values.index[rows[:5]] + 1).tolist()}"
            f" ({rows.size} rows); set {option} to one of {list(FILLS[1:])} or clean the data"
        )
    if missing == "zero":
        return values.fillna(0.0)
    filled = values.ffill() if missing == "ffill" else values.interpolate(limit_direction="both")
    if filled.isna().any().any():  # leading holes have nothing to carry forward
        filled = filled.bfill()
    return filled


class SeriesScaling:
    """How a forecast's columns are scaled: three shared scalers (targets, past and known covariates),
    and with per-series scaling each series' own target and past scalers, fitted on that series'
    training rows. A series never seen in training gets scalers of the same kind fitted on the rows
    it comes with (its own history: a cold start); known covariates are always scaled alike.

        scaling = SeriesScaling.from_state(preprocessing)       # as a bundle keeps it
        targets, past, known = scaling.of(series)
    """

    def __init__(self, targets: Scaler, past: Scaler, known: Scaler, own: dict | None = None) -> None:
        self.shared = (targets, past, known)
        self.own = own  # key -> (targets, past) scalers; None: one scaling for every series

    @classmethod
    def from_state(cls, preprocessing: dict) -> SeriesScaling:
        """From a forecast's preprocessing: ``scalers`` (shared) and ``series_scalers`` (per series)."""
        shared = [scaler_from_state(preprocessing["scalers"][f]) for f in ("targets", "past", "known")]
        own = preprocessing.get("series_scalers")
        if own is not None:
            own = {
                key: (scaler_from_state(s["targets"]), scaler_from_state(s["past"])) for key, s in own.items()
            }
        return cls(*shared, own)

    @property
    def per_series(self) -> bool:
        return self.own is not None

    def of(self, s: Series) -> tuple[Scaler, Scaler, Scaler]:
        """Series ``s``'s (targets, past, known) scalers."""
        if self.own is None:
            return self.shared
        if s.key not in self.own:  # a new series: scaled by its own history
            self.own[s.key] = (self.fresh(0, s.targets), self.fresh(1, s.past))
        return (*self.own[s.key], self.shared[2])

    def fresh(self, group: int, values: np.ndarray) -> Scaler:
        """A scaler of the shared one's kind (group 0: targets, 1: past) fitted on ``values``."""
        scaler = scaler_from_state(self.shared[group].state_dict())
        return scaler.fit(values) if values.shape[1] else scaler


@dataclass
class SeriesTable:
    """Every series' scaled columns once, one series after another: what windows are read from.

    values (R, D) float32, D = targets + past + known columns (calendar features last), R the rows of
    all series; series i holds rows ``offsets[i]`` to ``offsets[i + 1]`` and was scaled with
    ``target_scalers[i]`` (one object for all series unless each has its own).
    """

    values: np.ndarray  # (R, D)
    offsets: np.ndarray  # (n_series + 1,) int64
    n_targets: int
    n_observed: int  # targets + past covariates: the columns a window's horizon rows leave at zero
    target_scalers: list  # (n_series,) the scaler of each series' targets

    def unscale(self, values: np.ndarray, series: np.ndarray) -> np.ndarray:
        """``values`` (S, ..., n_targets) of windows of ``series`` (S,) in the targets' own units."""
        shape, n = values.shape, values.shape[-1]
        first_scaler = self.target_scalers[0]
        if all(scaler is first_scaler for scaler in self.target_scalers):
            return first_scaler.inverse_transform(values.reshape(-1, n)).reshape(shape)
        out = np.empty(shape, values.dtype if values.dtype in (np.float32, np.float16) else np.float64)
        order = np.argsort(series, kind="stable")
        found, first = np.unique(series[order], return_index=True)
        for i, rows in zip(found, np.split(order, first[1:]), strict=True):
            part = values[rows].reshape(-1, n)
            out[rows] = self.target_scalers[i].inverse_transform(part).reshape((len(rows), *shape[1:]))
        return out


def scaled_table(all_series: list[Series], scaling: SeriesScaling) -> SeriesTable:
    """The :class:`SeriesTable` of ``all_series``, each column group scaled by ``scaling``, written
    straight into one float32 array (no second copy of the table)."""
    first = all_series[0]
    n_targets, n_observed = first.targets.shape[1], first.targets.shape[1] + first.past.shape[1]
    n_codes = len(first.codes)  # static categoricals' codes: the last columns, never scaled
    D = n_observed + first.known.shape[1] + n_codes
    offsets = np.concatenate([[0], np.cumsum([len(s.targets) for s in all_series])]).astype(np.int64)
    values = np.empty((int(offsets[-1]), D), np.float32)
    target_scalers = []
    for s, a, b in zip(all_series, offsets[:-1], offsets[1:], strict=True):
        targets, past, known = scaling.of(s)
        values[a:b, :n_targets] = targets.transform(s.targets)
        values[a:b, n_targets:n_observed] = past.transform(s.past)
        values[a:b, n_observed : D - n_codes] = known.transform(s.known)
        values[a:b, D - n_codes :] = s.codes
        target_scalers.append(targets)
    return SeriesTable(values, offsets, n_targets, n_observed, target_scalers)


@dataclass
class Windows:
    """Windows of every series as (series, origin) pairs over one :class:`SeriesTable`: nothing is
    copied until rows are asked for, so a part of the data costs 16 bytes a window, not L + H rows.

    ``inputs_of(rows)`` (k, L + H, D) and ``targets_of(rows)`` (k, H, n_targets) build the windows
    ``rows`` (indices into this part) with one gather each; ``inputs`` and ``targets`` build all of
    them (small parts and tests).
    """

    table: SeriesTable
    lookback: int
    horizon: int
    series: np.ndarray  # (S,) index into the list of series
    origin: np.ndarray  # (S,) row of the last observed step in its series
    weights: np.ndarray | None = None  # (S,) each window's sample weight: its origin row's

    def __len__(self) -> int:
        return len(self.origin)

    def _last_rows(self, rows) -> np.ndarray:
        return self.table.offsets[self.series[rows]] + self.origin[rows]  # (k,) rows of the table

    def inputs_of(self, rows=slice(None)) -> np.ndarray:
        """The input windows ``rows`` (k, L + H, D): L observed rows, then H rows where only the
        known covariates are filled and the targets and past covariates are zero."""
        L, H = self.lookback, self.horizon
        window = self.table.values[self._last_rows(rows)[:, None] + np.arange(1 - L, H + 1)]  # (k, L + H, D)
        window[:, L:, : self.table.n_observed] = 0.0  # the future is unknown but for known covariates
        return window

    def targets_of(self, rows=slice(None)) -> np.ndarray:
        """The targets of the windows ``rows`` (k, H, n_targets)."""
        ahead = self._last_rows(rows)[:, None] + np.arange(1, self.horizon + 1)  # (k, H)
        return self.table.values[ahead, : self.table.n_targets]

    @property
    def inputs(self) -> np.ndarray:
        return self.inputs_of()

    @property
    def targets(self) -> np.ndarray:
        return self.targets_of()


class WindowDataset(Dataset):
    """:class:`Windows` as a dataset of (inputs, targets) pairs; a DataLoader's batch is built with one
    gather (``__getitems__``), not a window at a time. Collate with :func:`collate_windows`."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def weights(self) -> np.ndarray | None:
        """Each window's sample weight (the trainer draws windows in proportion), or None."""
        return self.windows.weights

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rows = np.array([index])
        return torch.from_numpy(self.windows.inputs_of(rows)[0]), torch.from_numpy(
            self.windows.targets_of(rows)[0]
        )

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """All windows as (inputs, targets) tensors, as a TensorDataset's (small parts only)."""
        return torch.from_numpy(self.windows.inputs), torch.from_numpy(self.windows.targets)

    def __getitems__(self, indices) -> Batch:
        rows = np.asarray(indices, dtype=np.int64)
        return Batch(
            torch.from_numpy(self.windows.inputs_of(rows)), torch.from_numpy(self.windows.targets_of(rows))
        )


def collate_windows(data) -> Batch:
    """A DataLoader's collate for :class:`WindowDataset`: its batches come built; pairs are stacked."""
    return data if isinstance(data, Batch) else stack_pairs(data)


def split_points(n: int, test: float | int, validation: float | int) -> tuple[int, int]:
    """Row indices (a, b): train is [0, a), validation [a, b), test [b, n). Fractions or row counts."""
    to_rows = lambda part: round(n * part) if isinstance(part, float) else int(part)  # noqa: E731
    b = n - to_rows(test)
    a = b - to_rows(validation)
    if not 0 < a <= b <= n:
        raise DataError(
            f"a series of {n} rows cannot be split into train/validation/test parts of "
            f"{a}/{b - a}/{n - b} rows"
        )
    return a, b


def make_windows(
    all_series: list[Series],
    lookback: int,
    horizon: int,
    bounds: list[tuple[int, int]],
    target_scaler: Scaler | None = None,
    past_scaler: Scaler | None = None,
    known_scaler: Scaler | None = None,
    stride: int = 1,
    table: SeriesTable | None = None,
) -> Windows:
    """Windows whose target rows lie in [start, end) of each series; bounds (start, end) per series.

    ``table``: the series scaled once (:func:`scaled_table`), shared by every part; without it the
    scalers make one."""
    if table is None:
        table = scaled_table(all_series, SeriesScaling(target_scaler, past_scaler, known_scaler))
    series, origins = [], []
    for index, (start, end) in enumerate(bounds):
        first = max(start, lookback)  # the first target row of a window
        found = np.arange(first - 1, end - horizon, stride)  # (S_i,) last observed rows
        series.append(np.full(found.size, index))
        origins.append(found)
    origin = np.concatenate(origins).astype(np.int64) if origins else np.zeros(0, np.int64)
    if origin.size == 0:
        raise DataError(
            f"no window of lookback {lookback} + horizon {horizon} fits in this part of the data: "
            "shorten the windows, or give the part more rows"
        )
    weights = None
    if all(s.weights is not None for s in all_series):
        weights = np.concatenate([all_series[i].weights[o] for i, o in enumerate(origins)])
    return Windows(table, lookback, horizon, np.concatenate(series).astype(np.int64), origin, weights)
