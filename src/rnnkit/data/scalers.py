"""Per-column scalers for series, fitted on the training part only and saved as plain JSON-able state.

    scaler = make_scaler("standard").fit(series[train])        # statistics of the training part
    scaled = scaler.transform(series)                          # (N, F) or (N,), same shape and dtype
    again = scaler_from_state(json.loads(json.dumps(scaler.state_dict())))   # the same numbers

Every scaler is the affine map ``x' = (x - offset) / scale`` per column, with statistics kept in
float64; a constant column gets scale 1, so it never divides by zero. :class:`LogScaler` takes the
logarithm first (positive series whose changes are proportional to their level: sales,
passengers, counts) and maps back with the exponential.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rnnkit.errors import ConfigError, DataError, unknown_name

# A spread this small relative to the column's magnitude is rounding noise: the column is constant.
_CONSTANT = 1e3 * np.finfo(np.float64).eps


class Scaler:
    """The identity (``make_scaler("none")``) and the base of the others: fit, transform, inverse, state.

    Subclasses name their fitted per-column ``statistics`` and map them to (offset, scale).
    """

    kind: ClassVar[str] = "none"
    options: ClassVar[tuple[str, ...]] = ()  # constructor arguments, saved in the state
    statistics: ClassVar[tuple[str, ...]] = ()  # fitted per-column statistics, saved in the state

    def __init__(self) -> None:
        self.fitted: dict[str, np.ndarray] | None = None  # name -> (F,) float64

    def fit(self, values: np.ndarray) -> Scaler:
        """Learn each column's statistics from ``values`` (N, F) or (N,): pass the training part only."""
        columns = _columns(values)  # (N, F) float64
        self.fitted = self._fit(columns)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        x, offset, scale = self._prepare(values)
        return ((x - offset) / scale).astype(_out_dtype(values))  # same shape as values

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        x, offset, scale = self._prepare(values)
        return (x * scale + offset).astype(_out_dtype(values))  # same shape as values

    def fit_transform(self, values: np.ndarray) -> np.ndarray:
        return self.fit(values).transform(values)

    def state_dict(self) -> dict[str, Any]:
        """{"kind", constructor options, each statistic as a list of floats (None before fit)}."""
        state: dict[str, Any] = {"kind": self.kind, **self._options()}
        for name in self.statistics:
            state[name] = None if self.fitted is None else self.fitted[name].tolist()
        return state

    def _fit(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale), each (F,)."""
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values (tuples become lists)."""
        return {name: _plain(getattr(self, name)) for name in self.options}

    def _prepare(self, values: np.ndarray) -> tuple[np.ndarray, Any, Any]:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim not in (1, 2):
            raise DataError(f"values must be (N,) or (N, F), got shape {x.shape}")
        if not self.statistics:
            return x, 0.0, 1.0
        if self.fitted is None:
            raise DataError(
                f"{type(self).__name__} is not fitted: call fit on the training part first, "
                "then transform every part with it"
            )
        offset, scale = self._affine()  # (F,) each
        width = 1 if x.ndim == 1 else x.shape[1]
        if width != offset.size:
            raise DataError(
                f"{type(self).__name__} was fitted on {offset.size} columns, got values of shape {x.shape}"
            )
        return x, offset, scale

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"


class MinMaxScaler(Scaler):
    """Maps each column's [min, max] onto ``feature_range``; a constant column goes to its low end."""

    kind = "minmax"
    options = ("feature_range",)
    statistics = ("min", "max")

    def __init__(self, feature_range: tuple[float, float] = (0, 1)) -> None:
        super().__init__()
        low, high = (float(v) for v in feature_range)
        if not low < high:
            raise ConfigError(f"feature_range must be (low, high) with low < high, got {feature_range!r}")
        self.feature_range = (low, high)

    def _fit(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        return {"min": columns.min(0), "max": columns.max(0)}

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.feature_range
        lo, hi = self.fitted["min"], self.fitted["max"]
        scale = _nonzero(hi - lo, lo, hi) / (high - low)  # (F,)
        return lo - low * scale, scale


class StandardScaler(Scaler):
    """Zero mean and unit (population) standard deviation per column."""

    kind = "standard"
    statistics = ("mean", "std")

    def _fit(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        return {"mean": columns.mean(0), "std": columns.std(0)}

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.fitted["mean"]
        return mean, _nonzero(self.fitted["std"], mean)


class RobustScaler(Scaler):
    """Median to 0 and the interquartile range (75th - 25th percentile) to 1: outliers barely move it."""

    kind = "robust"
    statistics = ("median", "iqr")

    def _fit(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        q25, median, q75 = np.percentile(columns, [25, 50, 75], axis=0)  # (F,) each
        return {"median": median, "iqr": q75 - q25}

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        median = self.fitted["median"]
        return median, _nonzero(self.fitted["iqr"], median)


SCALERS: dict[str, type[Scaler]] = {c.kind: c for c in (Scaler, MinMaxScaler, StandardScaler, RobustScaler)}


def make_scaler(name: str) -> Scaler:
    """A fresh scaler by name: "none", "minmax", "standard" or "robust"."""
    if name not in SCALERS:
        raise unknown_name("scaler", name, SCALERS)
    return SCALERS[name]()


class LogScaler:
    """``log(x)``, then ``inner``'s affine map; the inverse maps back with ``exp``.

    Values must be positive (an error says which column is not). A symmetric error in the log
    space is a proportional one in the original, and an interval's bounds map back as bounds; a
    point forecast mapped back is the median of a forecast distribution, not its mean.
    """

    def __init__(self, inner: Scaler) -> None:
        self.inner = inner

    def fit(self, values: np.ndarray) -> LogScaler:
        self.inner.fit(_log(values))
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        return self.inner.transform(_log(values)).astype(_out_dtype(values))

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        logs = self.inner.inverse_transform(np.asarray(values, dtype=np.float64))
        return np.exp(np.minimum(logs, _MAX_LOG)).astype(_out_dtype(values))

    def fit_transform(self, values: np.ndarray) -> np.ndarray:
        return self.fit(values).transform(values)

    def state_dict(self) -> dict[str, Any]:
        return {**self.inner.state_dict(), "log": True}

    def __repr__(self) -> str:
        return f"LogScaler({self.inner!r})"


_MAX_LOG = np.log(np.finfo(np.float64).max) - 1  # exp of more overflows


def _log(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if (x <= 0).any():
        columns = np.flatnonzero((x <= 0).reshape(len(x), -1).any(0)).tolist()
        raise DataError(
            f"a log transform needs positive values, but column(s) {columns} hold {x.min():g}: "
            "set data.transform to none for series that reach zero or below"
        )
    return np.log(x)


def scaler_from_state(state: dict[str, Any]) -> Scaler | LogScaler:
    """The scaler that wrote ``state`` (from :meth:`Scaler.state_dict`), with identical statistics."""
    if state.get("log"):
        return LogScaler(scaler_from_state({k: v for k, v in state.items() if k != "log"}))
    kind = state.get("kind")
    if kind not in SCALERS:
        raise unknown_name("scaler", kind, SCALERS)
    cls = SCALERS[kind]
    missing = [name for name in (*cls.options, *cls.statistics) if name not in state]
    if missing:
        raise ConfigError(f"{kind} scaler state lacks {missing}: save it with state_dict()")
    scaler = cls(**{name: state[name] for name in cls.options})
    if cls.statistics and state[cls.statistics[0]] is not None:
        scaler.fitted = {name: np.asarray(state[name], dtype=np.float64) for name in cls.statistics}
    return scaler


def _columns(values: np.ndarray) -> np.ndarray:
    """(N,) or (N, F) -> (N, F) float64, refusing empty input and NaN/inf (naming the rows)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x  # (N, F)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"fit needs values of shape (N,) or (N, F) with N, F >= 1, got {np.shape(values)}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"fit values hold NaN or inf at {len(rows)} rows {rows[:5].tolist()}"
            f"{'...' if len(rows) > 5 else ''}: fill or drop them before fitting"
        )
    return x


def _nonzero(spread: np.ndarray, *levels: np.ndarray) -> np.ndarray:
    """spread, with 1 where a column is constant (spread is rounding noise next to its levels)."""
    magnitude = np.max(np.abs(levels), axis=0) if levels else 0.0
    return np.where(spread <= _CONSTANT * np.maximum(magnitude, 1e-300), 1.0, spread)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _out_dtype(values: np.ndarray) -> np.dtype:
    dtype = np.asarray(values).dtype
    return dtype if dtype in (np.float32, np.float16) else np.dtype(np.float64)
