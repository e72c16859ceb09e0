"""A forecaster averaged with ARIMA (data.combine): the fitted models kept as data in the bundle
rebuild the fit exactly; the table's model row, forecast and sessions are the mean of the recurrent
forecast and ARIMA's, checked against statsmodels called directly; where it cannot apply it says so."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from statsmodels.tsa.arima.model import ARIMA
from test_forecast_session import DATA, H, assert_follows, bundle, table

from rnnkit.classical import classical_forecasts, fit_arima, fit_ets, spec_forecasts
from rnnkit.errors import DataError
from rnnkit.metrics import forecast_metrics
from rnnkit.models import build_model
from rnnkit.tasks import forecast, get_task
from rnnkit.tasks.forecast_eval import model_forecasts

N = 60


def seasonal(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 0.1 * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, n)


@pytest.mark.parametrize("fit", [fit_arima, fit_ets])
def test_a_fitted_model_kept_as_data_forecasts_as_the_fit_does(fit):
    y = seasonal(120)
    fitted = fit(y[:90], 12)
    spec = json.loads(json.dumps(fitted.spec()))  # what the bundle keeps
    origins = np.arange(89, 115)
    expected = classical_forecasts(fitted.kind, y, 90, origins, 5, 12)
    np.testing.assert_array_equal(spec_forecasts(spec, y, 90, origins, 5), expected)


def _evaluated(tmp_path, **data):
    path = tmp_path / "series.csv"
    pd.DataFrame({"value": seasonal()}).to_csv(path, index=False)
    cfg = forecast.SeriesDataConfig(
        path=str(path), lookback=12, horizon=2, test=15, classical=["arima"], **data
    )
    prepared = forecast.prepare(cfg)
    torch.manual_seed(0)
    model = build_model(
        {"name": "forecaster", **get_task("forecast").model_keys(cfg).fixed, "hidden_size": 8}
    )
    return prepared, model, forecast.evaluate(model, prepared)


def test_the_model_row_is_the_mean_of_the_recurrent_forecast_and_arimas(tmp_path):
    prepared, model, results = _evaluated(tmp_path)
    windows, pre = prepared.test_windows, prepared.preprocessing
    recurrent = model_forecasts(model, windows, pre)["point"][..., 0]  # (S, H)
    y = seasonal().astype(np.float32).astype(np.float64)
    arima = classical_forecasts("arima", y, N - 15, windows.origin, 2, 1)  # refitted here, independently
    actual = y[windows.origin[:, None] + np.arange(1, 3)]
    scale = pre["mase_scale"][0]
    rows = results["value"]["all"]
    for who, guess in {"model": (recurrent + arima) / 2, "recurrent": recurrent, "arima": arima}.items():
        expected = forecast_metrics(actual, guess, scale)
        for metric, value in expected.items():
            assert rows[who][metric] == pytest.approx(value, rel=1e-4), (who, metric)
    text = forecast.metrics_table(results)
    assert "averaged with ARIMA's" in text and "recurrent model alone" in text


def test_combine_empty_leaves_the_recurrent_model_alone(tmp_path):
    prepared, _, results = _evaluated(tmp_path, combine=[])
    assert "recurrent" not in results["value"]["all"] and results["combination"] is None
    assert prepared.preprocessing["combine"] == {"models": [], "specs": {}}


def test_forecast_and_sessions_average_with_arima_run_over_the_history(tmp_path):
    frame = table(40)
    combined = bundle(tmp_path / "combined", frame, {"distribution": "gaussian"}, combine=["arima"])
    alone = bundle(tmp_path / "alone", frame, {"distribution": "gaussian"}, combine=[])
    (specs,) = combined.preprocessing["combine"]["specs"]["arima"].values()  # one series
    spec = specs[0]  # its one target
    history = frame["value"].to_numpy(np.float32).astype(np.float64)
    arima = ARIMA(history, **spec["options"]).filter(np.asarray(spec["params"])).forecast(H)  # statsmodels
    got, base = combined.forecast(frame), alone.forecast(frame)
    np.testing.assert_allclose(got["value"], (base["value"] + arima) / 2, rtol=1e-5)
    shift = got["value"] - base["value"]  # the interval moves with the point
    np.testing.assert_allclose(got["value_lower"], base["value_lower"] + shift, rtol=1e-5)
    assert_follows(combined, frame, sizes=(5,))


def test_a_series_unseen_in_training_is_refused_by_a_combined_forecaster(tmp_path):
    frame = pd.concat([table(30).assign(shop="a"), table(30, seed=1).assign(shop="b")])
    predictor = bundle(tmp_path / "b", frame, id_column="shop", combine=["arima"])
    predictor.forecast(frame[frame.shop == "b"])  # a training series: fine
    with pytest.raises(DataError, match=r"series 'c' was not in the training data.*data.combine=\[\]"):
        predictor.forecast(table(30).assign(shop="c"))


def test_unset_it_is_skipped_with_the_reason_above_twenty_series(tmp_path):
    frame = pd.concat([table(30, seed=k).assign(shop=f"s{k}") for k in range(21)])
    cfg = forecast.SeriesDataConfig(**{**DATA, "classical": None}, id_column="shop")
    combination = forecast.prepare(cfg, frame=frame).preprocessing["combine"]
    assert combination["models"] == [] and "21 here; set data.combine" in combination["why"]
