"""ARIMA, ETS and Theta baselines: their forecasts equal statsmodels' own, they use no data after an
origin, and the forecast table ranks them beside the model."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsmodels", reason="the classical baselines are the rnnkit[stats] extra")
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.forecasting.theta import ThetaModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing as HoltWinters
from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

from rnnkit.classical import CLASSICAL, FITTERS, _StateSpace, classical_forecasts
from rnnkit.errors import DataError
from rnnkit.tasks import forecast

N, A, H = 120, 90, 3


def series(seasonal: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    noise = np.zeros(N)
    for i in range(1, N):  # AR(1) noise around a trend (and a 12-step cycle)
        noise[i] = 0.6 * noise[i - 1] + rng.normal()
    return 50 + 0.2 * t + noise + (8 * np.sin(2 * np.pi * t / 12) if seasonal else 0)


@pytest.mark.parametrize("name", ["arima", "ets"])
def test_state_space_one_step_forecasts_equal_statsmodels_append_and_predict(name):
    y = series()
    origins = np.arange(A - 1, N - 1)
    ours = classical_forecasts(name, y, A, origins, 1)[:, 0]
    chosen = FITTERS[name](y[:A]).result.model  # the model the AIC picked, refitted by statsmodels itself
    if name == "arima":
        direct = ARIMA(y[:A], order=chosen.order, seasonal_order=chosen.seasonal_order, trend=chosen.trend)
    else:
        direct = ExponentialSmoothing(y[:A], trend=chosen.trend, damped_trend=chosen.damped_trend)
    result = direct.fit(**({} if name == "arima" else {"disp": False}))
    expected = result.append(y[A:]).predict(start=A, end=N - 1)  # one step ahead, parameters fixed
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        lambda y: ARIMA(y, order=(1, 1, 1), trend="t"),  # a drift: a time-varying intercept
        lambda y: ARIMA(y, order=(1, 0, 0), seasonal_order=(1, 0, 0, 12), trend="c"),
        lambda y: ExponentialSmoothing(y, trend=True, damped_trend=True, seasonal=12),
    ],
    ids=["arima-drift", "sarima", "ets-damped-seasonal"],
)
def test_multi_step_forecasts_equal_statsmodels_from_each_origin(model):
    """Equal from one filter pass (the last origin runs past the series end) and from an append per origin."""
    y = series(seasonal=True)
    origins = np.array([A + 5, A - 1, N - H - 1, N - 1])
    spec = model(y[:A])
    result = spec.fit(**({} if isinstance(spec, ARIMA) else {"disp": False}))
    ours = _StateSpace(result, "given", {}).forecasts(y, A, origins, H)
    for row, o in zip(ours, origins, strict=True):
        now = result.append(y[A : o + 1]) if o >= A else result
        np.testing.assert_allclose(row, now.forecast(H), rtol=1e-6)


@pytest.mark.parametrize("seasonal", [False, True])
def test_theta_equals_statsmodels_at_the_fit_and_runs_its_ses_on(seasonal):
    y = series(seasonal)
    period = 12 if seasonal else 1
    ours = classical_forecasts("theta", y, A, np.array([A - 1, N - H - 1]), H, period)
    model = ThetaModel(y[:A], period=period if seasonal else None, deseasonalize=seasonal)
    fitted = model.fit()
    np.testing.assert_allclose(ours[0], fitted.forecast(H), rtol=1e-9)
    if not seasonal:  # later: the SES level statsmodels' Holt-Winters reaches with the same alpha
        alpha, b0 = fitted.params["alpha"], fitted.params["b0"]
        n = N - H
        ses = HoltWinters(y[:n], initial_level=y[0], initialization_method="known").fit(
            smoothing_level=alpha, optimized=False
        )
        h = np.arange(H) + 1 / alpha - (1 - alpha) ** n / alpha
        np.testing.assert_allclose(ours[1], 0.5 * b0 * h + ses.forecast(1)[0], rtol=1e-6)


@pytest.mark.parametrize("name", CLASSICAL)
def test_no_forecast_reads_data_after_its_origin(name):
    y = series(seasonal=True)
    origins = np.arange(A - 1, N - H)
    season = 1 if name == "arima" else 12  # a seasonal ARIMA search takes seconds
    before = classical_forecasts(name, y, A, origins, H, season)
    changed = y.copy()
    cut = A + 10
    changed[cut + 1 :] += 100  # everything after origin `cut` moves
    after = classical_forecasts(name, changed, A, origins, H, season)
    keep = origins <= cut
    np.testing.assert_allclose(after[keep], before[keep], rtol=1e-9)
    assert not np.allclose(after[~keep], before[~keep])


def test_arima_finds_an_autoregression_without_differencing():
    rng = np.random.default_rng(1)
    y = np.zeros(300)
    for i in range(1, 300):
        y[i] = 0.8 * y[i - 1] + rng.normal()
    model = FITTERS["arima"](y).result.model
    assert model.order[1] == 0 and model.order[0] >= 1


def test_errors_name_the_problem():
    y = series()
    with pytest.raises(DataError, match="unknown classical forecaster 'prophet'"):
        classical_forecasts("prophet", y, A, np.array([A]), 1)
    with pytest.raises(DataError, match=r"must not precede the fitted part's last row \(89\)"):
        classical_forecasts("ets", y, A, np.array([A - 5]), 1)
    with pytest.raises(DataError, match="at least 4 observations"):
        classical_forecasts("theta", y, 3, np.array([5]), 1)


def test_the_forecast_table_ranks_the_classical_baselines_beside_the_model(tmp_path):
    import torch

    from rnnkit.models import build_model
    from rnnkit.tasks import get_task

    path = tmp_path / "series.csv"
    pd.DataFrame({"value": series(seasonal=True)}).to_csv(path, index=False)
    cfg = forecast.SeriesDataConfig(path=str(path), lookback=12, horizon=2, test=20)
    prepared = forecast.prepare(cfg)
    torch.manual_seed(0)
    keys = dict(get_task("forecast").model_keys(cfg).fixed)
    model = build_model({"name": "forecaster", **keys, "hidden_size": 8})
    results = forecast.evaluate(model, prepared)
    rows = results["value"]["h1"]
    assert {"arima", "ets", "theta"} <= set(rows) and not results["skipped"]
    origins = prepared.test_windows.origin
    y = series(seasonal=True)
    mae = np.mean(np.abs(classical_forecasts("theta", y, N - 20, origins, 2)[:, 0] - y[origins + 1]))
    assert rows["theta"]["MAE"] == pytest.approx(mae, rel=1e-4)
    text = forecast.metrics_table(results)
    labels = ("ARIMA (orders by AIC)", "ETS (by AIC)", "Theta", "recurrent model alone")
    for label in (*labels, "(rank: by MASE among the 9 rows)"):  # by default the model is averaged with ARIMA
        assert label in text
    lines = text.splitlines()
    start = lines.index("value, step 1 ahead:") + 2
    ranks = [int(line.split()[-1]) for line in lines[start : start + 9]]
    mase = [m["MASE"] for m in rows.values()]  # in the table's order; ties share a rank
    assert ranks == [1 + sum(other < m for other in mase) for m in mase] and min(ranks) == 1


def test_without_statsmodels_the_classical_rows_are_skipped_with_the_fix(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_statsmodels(name, *args, **kwargs):
        if name.startswith("statsmodels"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_statsmodels)
    with pytest.raises(DataError, match=r"pip install 'rnnkit\[stats\]'"):
        classical_forecasts("arima", series(), A, np.array([A]), 1)


def test_unset_classical_baselines_are_skipped_with_a_note_above_twenty_series(tmp_path):
    import torch

    from rnnkit.models import build_model
    from rnnkit.tasks import get_task

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"id": np.repeat(np.arange(21), 30), "value": rng.normal(size=21 * 30).cumsum().round(3)}
    )
    path = tmp_path / "many.csv"
    frame.to_csv(path, index=False)
    torch.manual_seed(0)
    for classical, expected in ((None, set()), (["theta"], {"theta"})):
        cfg = forecast.SeriesDataConfig(
            path=str(path), id_column="id", lookback=6, test=6, classical=classical
        )
        model = build_model(
            {"name": "forecaster", **get_task("forecast").model_keys(cfg).fixed, "hidden_size": 4}
        )
        results = forecast.evaluate(model, forecast.prepare(cfg))
        assert set(results["value"]["h1"]) & set(CLASSICAL) == expected
        skipped = results["skipped"].get("classical baselines")
        assert (skipped == "one fit per series, 21 here; set data.classical to fit them") == (
            classical is None
        )
    assert "(classical baselines skipped: one fit per series, 21 here" in forecast.metrics_table(
        forecast.evaluate(model, forecast.prepare(cfg.model_copy(update={"classical": None})))
    )
