"""Classical forecasters beside the recurrent one: ARIMA, exponential smoothing (ETS), Theta (statsmodels).

Each is fitted once on a series' training part, then updated with every new observation of the
backtest without refitting (parameters fixed, states filtered on), as statsmodels' ``append`` does:
a forecast from origin ``o`` uses ``series[: o + 1]`` and nothing after it.

- ``arima``: orders chosen by AIC on the training part, as auto-ARIMA does (Hyndman & Khandakar
  2008): d by repeated KPSS tests, D by the seasonal strength of an STL decomposition (>= 0.64), then
  a stepwise search from four starting models over p, q in 0..3 (and P, Q in 0..1 with a season),
  with a constant when undifferenced or a drift when differenced once, kept if it lowers the AIC.
- ``ets``: additive-error exponential smoothing in state-space form, trend none, additive or damped
  and season none or additive, the combination with the lowest AIC.
- ``theta``: statsmodels' ThetaModel (Assimakopoulos & Nikolopoulos 2000; Hyndman & Billah 2003):
  SES with half the slope of a linear trend, on the series deseasonalised by classical
  decomposition when it tests seasonal. Updating means running the fitted SES on.

Seasonal terms in ARIMA and ETS carry one state per step of the season, so seasons longer than
``MAX_STATE_SEASON`` (hourly data's day, daily data's year) are fitted without them; Theta handles any
season. statsmodels is an extra: ``pip install 'rnnkit[stats]'``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np

from rnnkit.errors import DataError

CLASSICAL = ("arima", "ets", "theta")
MAX_STATE_SEASON = 12  # a monthly series' year; a seasonal ARIMA search at 24 or 30 takes minutes


def classical_forecasts(
    name: str, series: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int, season: int = 1
) -> np.ndarray:
    """Forecasts (S, H) of ``name`` from each origin, the model fitted on ``series[:fit_end]`` (N,).

    Every origin must be at or after the fit's last row (``origin >= fit_end - 1``).
    """
    if name not in FITTERS:
        raise DataError(f"unknown classical forecaster {name!r}; expected one of {list(CLASSICAL)}")
    origins = np.asarray(origins)
    if len(origins) and origins.min() < fit_end - 1:
        raise DataError(f"forecast origins must not precede the fitted part's last row ({fit_end - 1})")
    if fit_end < 4:
        raise DataError(f"{name} needs at least 4 observations before the first origin, got {fit_end}")
    train = np.asarray(series[:fit_end], dtype=np.float64)
    with warnings.catch_warnings(record=True):  # statsmodels' convergence and start-parameter warnings
        warnings.simplefilter("always")  # recorded, not printed: statsmodels resets filters inside
        fitted = FITTERS[name](train, season)
        return fitted.forecasts(np.asarray(series, dtype=np.float64), fit_end, origins, horizon)


def _quiet(fit: Callable) -> Callable:
    """``fit`` with statsmodels' convergence, start-parameter and deprecation warnings recorded, not shown."""

    @functools.wraps(fit)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings(record=True):  # statsmodels resets the filters inside
            warnings.simplefilter("always")
            return fit(*args, **kwargs)

    return quiet


def _require_statsmodels():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        raise DataError("classical baselines need statsmodels: pip install 'rnnkit[stats]'") from None


class _StateSpace:
    """A fitted statsmodels state-space result, run on over the rest of the series with its parameters
    fixed (``append``, which filters from the start as the fit did: ``extend`` would restart some
    models, ETS among them, from their estimated initial states).

    One filter pass gives the one-step predicted state at every row, ``a[o + 1 | o]``, which depends
    on ``series[: o + 1]`` only; the forecasts from every origin are then that state carried forward
    through the model's matrices, as ``forecast`` does after appending up to ``o`` (equal to it to
    the last bit, tested), but in one pass instead of one filter per origin. ``horizon`` missing
    values appended past the end give the time-varying terms (a drift) their future rows.
    """

    def __init__(self, result, kind: str, options: dict) -> None:
        self.result, self.kind, self.options = result, kind, options

    def spec(self) -> dict:
        """The fitted model as JSON-able data: its kind, the options it was built with, its parameters."""
        return {
            "model": self.kind,
            "options": self.options,
            "params": np.asarray(self.result.params).tolist(),
        }

    def forecasts(self, series: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int) -> np.ndarray:
        rest = np.concatenate([series[fit_end:], np.full(horizon, np.nan)])
        full = self.result.append(rest)
        ssm, states = full.model.ssm, full.filter_results.predicted_state  # (k, N + 1)
        state = states[:, origins + 1].T  # (S, k)
        out = np.empty((len(origins), horizon))
        for step in range(horizon):
            t = origins + 1 + step
            design, intercept = _rows(ssm.design, t)[:, 0], _rows(ssm.obs_intercept, t)[:, 0]
            out[:, step] = np.einsum("sk,sk->s", design, state) + intercept
            transition = _rows(ssm.transition, t)
            state = np.einsum("sij,sj->si", transition, state) + _rows(ssm.state_intercept, t)
        return out


def _rows(matrix: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A state-space matrix (..., T or 1) at each time in ``t``: (S, ...)."""
    return np.moveaxis(matrix[..., t] if matrix.shape[-1] > 1 else matrix[..., [0] * len(t)], -1, 0)


# No parameter covariance (the default's numerical derivatives cost a third of a fit) and no
# smoothed states: the search needs the likelihood, the backtest the filtered states.
_FAST_FIT = {"cov_type": "none", "low_memory": True}


def state_season(season: int, n: int) -> int:
    """The season a state-space model gets: 0 (none) when 1, too long, or under two seasons of data."""
    return season if 1 < season <= MAX_STATE_SEASON and n >= 2 * season + 2 else 0


@_quiet
def fit_arima(train: np.ndarray, season: int = 1) -> _StateSpace:
    """ARIMA(p, d, q)(P, D, Q)_m by AIC, searched stepwise (module docs)."""
    _require_statsmodels()
    from statsmodels.tsa.arima.model import ARIMA

    m = state_season(season, len(train))
    D = int(m > 0 and _seasonal_strength(train, m) >= 0.64)
    d = _ndiffs(_seasonal_diff(train, m * D))
    drift = {0: "c", 1: "t"}.get(d + D)  # a constant, or a drift once differenced; none after two
    fitted: dict[tuple, object] = {}

    def options(key: tuple) -> dict:
        p, q, P, Q, trend = key
        return {"order": [p, d, q], "seasonal_order": [P, D, Q, m] if m else [0, 0, 0, 0], "trend": trend}

    def fit(key: tuple):
        if key not in fitted:
            fitted[key] = _lower_aic(None, lambda: ARIMA(train, **options(key)).fit(**_FAST_FIT))
        return fitted[key]

    trend = drift or "n"
    starts = [(2, 2, 1, 1), (0, 0, 0, 0), (1, 0, 1, 0), (0, 1, 0, 1)]  # Hyndman & Khandakar's four
    candidates = [(p, q, P if m else 0, Q if m else 0, trend) for p, q, P, Q in starts]
    best = None
    while candidates and len(fitted) < 25:
        improved = False
        for key in dict.fromkeys(candidates):
            result = fit(key)
            if result is not None and (best is None or result.aic < fit(best).aic):
                best, improved = key, True
        if not improved and best is not None and len(fitted) > len(starts):
            break
        p, q, P, Q, trend = best if best is not None else (0, 0, 0, 0, "n")
        steps = [(1, 0, 0, 0), (-1, 0, 0, 0), (0, 1, 0, 0), (0, -1, 0, 0), (1, 1, 0, 0), (-1, -1, 0, 0)]
        steps += [(0, 0, 1, 0), (0, 0, -1, 0), (0, 0, 0, 1), (0, 0, 0, -1)] if m else []
        candidates = [
            (p + a, q + b, P + c, Q + e, trend)
            for a, b, c, e in steps
            if 0 <= p + a <= 3 and 0 <= q + b <= 3 and 0 <= P + c <= 1 and 0 <= Q + e <= 1
        ]
        if drift:
            candidates.append((p, q, P, Q, "n" if trend != "n" else drift))
        candidates = [key for key in candidates if key not in fitted]
    if best is None:
        raise DataError("no ARIMA model could be fitted on the training part")
    return _StateSpace(fit(best), "arima", options(best))


@_quiet
def fit_ets(train: np.ndarray, season: int = 1) -> _StateSpace:
    """Additive-error ETS with the trend and season of lowest AIC (module docs)."""
    _require_statsmodels()
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    m = state_season(season, len(train))
    best, chosen = None, None
    for trend, damped in ((False, False), (True, False), (True, True)):
        for seasonal in (None, m) if m else (None,):
            options = {"trend": trend, "damped_trend": damped, "seasonal": seasonal}
            model = ExponentialSmoothing(train, **options)
            better = _lower_aic(best, lambda model=model: model.fit(disp=False, **_FAST_FIT))
            best, chosen = better, options if better is not best else chosen
    if best is None:
        raise DataError("no exponential smoothing model could be fitted on the training part")
    return _StateSpace(best, "ets", chosen)


def from_spec(spec: dict, train: np.ndarray) -> _StateSpace:
    """A model of :meth:`_StateSpace.spec` on ``train`` (N,), its parameters fixed: filtered, not fitted.

    On the rows it was fitted on it is the fitted model; on others, the same model run over them.
    """
    _require_statsmodels()
    if spec.get("model") not in SPEC_MODELS:
        raise DataError(
            f"unknown classical model {spec.get('model')!r} in the bundle; expected one of {SPEC_MODELS}"
        )
    if spec["model"] == "arima":
        from statsmodels.tsa.arima.model import ARIMA as model_type
    else:
        from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing as model_type
    train = np.asarray(train, dtype=np.float64)
    with warnings.catch_warnings(record=True):  # statsmodels resets the filters inside
        warnings.simplefilter("always")
        model = model_type(train, **spec["options"])
        return _StateSpace(model.filter(np.asarray(spec["params"])), spec["model"], spec["options"])


def spec_forecasts(
    spec: dict, series: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int
) -> np.ndarray:
    """Forecasts (S, H) from each origin of the model of ``spec``, run over ``series[:fit_end]`` and
    then updated with each new observation, as :func:`classical_forecasts` does with a fitted one."""
    series = np.asarray(series, dtype=np.float64)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return from_spec(spec, series[:fit_end]).forecasts(series, fit_end, np.asarray(origins), horizon)


class _Theta:
    """statsmodels' ThetaModel fitted once; new observations move its SES level, nothing else."""

    def __init__(self, train: np.ndarray, season: int):
        _require_statsmodels()
        from statsmodels.tsa.forecasting.theta import ThetaModel

        seasonal = season > 1 and len(train) >= 2 * season
        self.result = ThetaModel(train, period=season if seasonal else None, deseasonalize=seasonal).fit()
        self.model = self.result.model
        self.alpha, self.b0 = float(self.result.params["alpha"]), float(self.result.params["b0"])
        self.level, self.n = float(np.asarray(self.result._one_step).ravel()[0]), len(train)
        self.indices = np.asarray(self.result._seasonal)
        self.multiplicative = self.model.method.startswith("mul")

    def forecasts(self, series: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int) -> np.ndarray:
        out = np.empty((len(origins), horizon))
        done = fit_end
        for k in np.argsort(origins, kind="stable"):
            if origins[k] + 1 > done:
                self.update(series[done : origins[k] + 1])
                done = origins[k] + 1
            out[k] = self.forecast(horizon)
        return out

    def update(self, values: np.ndarray) -> None:
        for value in values:  # the SES recursion, level = alpha x + (1 - alpha) level
            self.level = self.alpha * self._deseasonalise(value, self.n) + (1 - self.alpha) * self.level
            self.n += 1

    def forecast(self, horizon: int) -> np.ndarray:
        """ThetaModelResults.forecast(horizon) (theta = 2) from the current level and length."""
        a = self.alpha
        h = np.arange(horizon, dtype=np.float64)
        if a > 0:
            h += 1 / a - (1 - a) ** self.n / a
        out = 0.5 * self.b0 * h + self.level
        if self.model.deseasonalize and self.indices.shape[0]:
            season = self.indices[(self.n + np.arange(horizon)) % self.model.period]
            out = out * season if self.multiplicative else out + season
        return out

    def _deseasonalise(self, value: float, index: int) -> float:
        if not (self.model.deseasonalize and self.indices.shape[0]):
            return value
        s = self.indices[index % self.model.period]
        return value / s if self.multiplicative else value - s


FITTERS: dict[str, Callable] = {"arima": fit_arima, "ets": fit_ets, "theta": _quiet(_Theta)}
SPEC_MODELS = ("arima", "ets")  # the state-space ones, which a spec rebuilds


def _lower_aic(best, fit: Callable):
    """``fit()`` if it succeeds with a finite AIC below ``best``'s, else ``best``."""
    try:
        result = fit()
    except (ValueError, np.linalg.LinAlgError):
        return best
    if not np.isfinite(result.aic) or (best is not None and result.aic >= best.aic):
        return best
    return result


def _ndiffs(y: np.ndarray, max_d: int = 2) -> int:
    """Differences until a KPSS test (level stationarity, 5%) no longer rejects, at most ``max_d``."""
    from statsmodels.tsa.stattools import kpss

    d = 0
    while d < max_d and len(y) > 10 and np.ptp(y) > 0:
        _, p_value, *_ = kpss(y, regression="c", nlags="auto")
        if p_value >= 0.05:
            break
        y, d = np.diff(y), d + 1
    return d


def _seasonal_diff(y: np.ndarray, lag: int) -> np.ndarray:
    return y[lag:] - y[:-lag] if lag else y


def _seasonal_strength(y: np.ndarray, m: int) -> float:
    """Wang, Smith & Hyndman (2006): 1 - var(remainder) / var(season + remainder), by STL."""
    from statsmodels.tsa.seasonal import STL

    fit = STL(y, period=m, robust=True).fit()
    detrended = fit.seasonal + fit.resid
    variance = np.var(detrended)
    return 0.0 if variance == 0 else max(0.0, 1 - np.var(fit.resid) / variance)
