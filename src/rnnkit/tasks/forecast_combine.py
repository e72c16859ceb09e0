"""A forecaster combined with classical ones: its point forecast averaged with ARIMA's (``data.combine``).

Averaging forecasts of different kinds beats each of them more often than not (Bates & Granger
1969; in the M4 competition the best entries combined statistical and learned forecasts). Here the
recurrent model's point forecast is averaged with that of each model in ``data.combine`` (``arima``,
``ets``), fitted on each series' training part, for each target:

    point = mean(recurrent point, ARIMA's point, ...)        the interval: the recurrent model's,
                                                             moved by the same amount

The classical models' parameters are kept in the bundle (``preprocessing["combine"]``); a forecast
runs each over the history it is given with those parameters, as the backtest updates them with
each new observation, without refitting. Unset, ``combine`` is ARIMA where the classical baselines
are fitted by default (statsmodels installed, up to 20 series) and nothing otherwise, with the
reason in the table. benchmarks/forecast_quality.py chose it: over six classic series a RevIN
ensemble averaged with ARIMA had a lower mean MASE than either alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.classical import FITTERS, spec_forecasts
from rnnkit.data.series import Series
from rnnkit.errors import DataError

MAX_COMBINED_SERIES = 20  # one ARIMA search a series takes seconds: more only when asked for
LABELS = {"arima": "ARIMA", "ets": "ETS"}


def fit_combination(names: list[str] | None, train: list[tuple[Series, int]], season: int) -> dict[str, Any]:
    """{"models": names, "specs": {name: {series key: [spec per target]}}}, each fitted on a series'
    first ``a`` rows (``train``: (series, a) pairs); unset ``names`` that cannot be fitted give
    {"models": [], "why": reason}."""
    auto = names is None
    if auto and len(train) > MAX_COMBINED_SERIES:
        return {
            "models": [],
            "why": f"one ARIMA search a series, {len(train)} here; set data.combine to fit them",
        }
    names = ["arima"] if auto else list(names)
    try:
        specs = {name: {s.key: _fitted(name, s, a, season) for s, a in train} for name in names}
    except DataError as error:  # statsmodels missing, a series too short to fit
        if not auto:
            raise DataError(f"data.combine: {error}") from None
        return {"models": [], "why": f"{error} (data.combine)"}
    return {"models": names, "specs": specs}


def _fitted(name: str, series: Series, a: int, season: int) -> list[dict]:
    """``name`` fitted on the first ``a`` rows of each target of ``series``, as specs."""
    try:
        return [
            FITTERS[name](series.targets[:a, j].astype(np.float64), season).spec()
            for j in range(series.targets.shape[1])
        ]
    except DataError as error:
        raise DataError(f"series {series.key!r}: {error}") from None


def combined(
    point: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None, classical: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The mean of ``point`` and the ``classical`` points (each shaped as ``point``); the bounds moved as
    far as the point moved."""
    if not classical:
        return point, lower, upper
    mean = np.mean([point, *classical], axis=0).astype(point.dtype)
    shift = mean - point
    return mean, None if lower is None else lower + shift, None if upper is None else upper + shift


def window_forecasts(
    combination: dict[str, Any], series: list[Series], windows, fit_ends: list[int], horizon: int
) -> dict[str, np.ndarray]:
    """Each combined model's forecasts (S, H, n_targets) of the evaluated ``windows`` (their series
    and origins): run over each series' first ``fit_ends[i]`` rows, then updated row by row."""
    out = {}
    for name in combination["models"]:
        parts = [
            np.stack(
                [
                    spec_forecasts(
                        spec, s.targets[:, j], fit_ends[i], windows.origin[windows.series == i], horizon
                    )
                    for j, spec in enumerate(_specs(combination, name, s.key))
                ],
                axis=-1,
            )
            for i, s in enumerate(series)
            if (windows.series == i).any()
        ]
        out[name] = np.concatenate(parts)
    return out


def end_forecasts(combination: dict[str, Any], series: Series, horizon: int) -> list[np.ndarray]:
    """Each combined model's forecast (H, n_targets) after the last row of ``series``."""
    end = len(series.targets)
    return [
        np.stack(
            [
                spec_forecasts(spec, series.targets[:, j], end, np.array([end - 1]), horizon)[0]
                for j, spec in enumerate(_specs(combination, name, series.key))
            ],
            axis=-1,
        )
        for name in combination["models"]
    ]


def describe(combination: dict[str, Any] | None) -> str | None:
    """A line for the table: what the model's row is, or why nothing was combined."""
    if not combination or not (combination["models"] or "why" in combination):
        return None
    if not combination["models"]:
        return f"(combination with ARIMA skipped: {combination['why']})"
    names = " and ".join(LABELS[n] for n in combination["models"])
    return (
        f"(model: the recurrent forecast averaged with {names}'s, fitted on the training part; data.combine)"
    )


def _specs(combination: dict[str, Any], name: str, key: str) -> list[dict]:
    specs = combination["specs"][name]
    if key not in specs:
        known = list(specs)[:5]
        raise DataError(
            f"series {key!r} was not in the training data, and this forecaster averages its forecasts "
            f"with {LABELS[name]} models fitted per training series ({known}...): forecast only those, "
            "or retrain with data.combine=[]"
        )
    return specs[key]
