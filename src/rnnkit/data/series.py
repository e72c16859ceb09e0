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
    if missing not in FILLS:
        raise DataError(f"unknown missing-value policy {missing!r}; expected one of {list(FILLS)}")
    # one pass over the whole table, then each series' rows by position: no DataFrame per series
    times = _parse_times(frame[columns.time], columns.time) if columns.time else None  # (R,) datetime64
    names = [*columns.targets, *columns.past, *columns.known]
    block = frame[names]
    if not all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        block = block.apply(pd.to_numeric, errors="coerce")  # text cells become holes, named below
    values = block.to_numpy(np.float32)  # (R, targets + past + known)
    if columns.id is None:
        keys, order, starts = ["series"], np.arange(len(frame)), np.array([0, len(frame)])
    else:  # the rows sorted by series (stable: time order kept), each series one slice of them
        codes, keys = pd.factorize(frame[columns.id], sort=False)  # keys in order of first appearance
        kept = codes >= 0  # a row without an id belongs to no series
        order = np.flatnonzero(kept)[np.argsort(codes[kept], kind="stable")]
        starts = np.searchsorted(codes[order], np.arange(len(keys) + 1))
    # one sorted copy: every series' values and times are views into it, not arrays of their own
    table = _Rows(frame, values[order], names, None if times is None else times[order], order)
    return [_one_series(str(key), table, slice(a, b), columns, calendar, missing, missing_option)
            for key, a, b in zip(keys, starts[:-1], starts[1:], strict=True)]  # fmt: skip


@dataclass
class _Rows:
    """The whole table, read once: its frame (for the rarely used columns), the numeric columns as
    float32 and the parsed times; a series is a set of row positions into it."""

    frame: pd.DataFrame
    values: np.ndarray  # (R, n) float32, the rows sorted by series
    names: list[str]
    times: np.ndarray | None  # (R,) datetime64, sorted alike
    order: np.ndarray  # (R,) each sorted row's position in the frame


def _parse_times(values: pd.Series, name: str) -> np.ndarray:
    times = (
        values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce")
    )
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"time column {name!r} has values that are not dates on rows {(bad[:5] + 1).tolist()}"
        )
    return times.to_numpy()


def _one_series(
    key: str, table: _Rows, part: slice, columns: Columns, calendar, missing: str, option: str
) -> Series:
    where = "" if columns.id is None else f" of series {key!r}"
    rows = table.order[part]  # the series' row positions in the frame
    index = pd.Index(rows)  # for messages: row numbers are positions + 1
    times = None
    if columns.time:
        times = pd.DatetimeIndex(table.times[part])
        _check_times(times, index, where)
    array = table.values[part]  # (N, n) float32, a view
    if np.isnan(array).any():  # holes: filled (or refused) by the policy
        filled = _fill(pd.DataFrame(array, index=index, columns=table.names), missing, where, option)
        array = filled.to_numpy(np.float32)
    n_t, n_p = len(columns.targets), len(columns.past)
    part = table.frame.iloc[rows] if (columns.static or columns.categorical or columns.weight) else None
    known = array[:, n_t + n_p :]
    if calendar:
        known = np.concatenate([known, calendar_features(times, calendar)], 1)
    if columns.static:  # known on every row, the horizon's included
        statics = [_constant(part[c], c, where, numeric=True) for c in columns.static]
        known = np.concatenate([known, np.tile(np.asarray(statics, np.float32), (len(rows), 1))], 1)
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
