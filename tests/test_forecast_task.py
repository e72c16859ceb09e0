"""The forecast task: prepare a table into windows that fit the model, reuse saved scalers, evaluate a
model beside the baselines (checked by hand on the raw series), print the table, forecast new data,
and the shipped Seattle weather job split as its config says."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import BASELINES, baseline, forecast_metrics, seasonal_scale
from rnnkit.models import build_model
from rnnkit.tasks import forecast, forecast_use, get_task

ROOT = Path(__file__).resolve().parents[1]
N, L, H, SEASON = 80, 8, 3, 7
A, B = 60, 70  # validation and test parts start here: test=10 rows, validation=10 rows, of 80


def model_defaults(cfg) -> dict:
    """What the forecast task fixes in the model config for the data section ``cfg``."""
    return dict(get_task("forecast").model_keys(cfg).fixed)


def table(n: int = N, seed: int = 0, start: str = "2023-03-01") -> pd.DataFrame:
    """A daily series with a weekly cycle and a trend, and a past covariate (humidity)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = 20 + 3 * np.sin(2 * np.pi * t / 7) + 0.05 * t + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"),
            "value": value.round(3),
            "humidity": rng.uniform(30, 90, n).round(1),
        }
    )


@pytest.fixture
def csv(tmp_path) -> Path:
    path = tmp_path / "series.csv"
    table().to_csv(path, index=False)
    return path


def config(path, **overrides) -> forecast.SeriesDataConfig:
    options = dict(
        path=str(path),
        time_column="date",
        targets=["value"],
        past_covariates=["humidity"],
        calendar=["day_of_week"],
        lookback=L,
        horizon=H,
        test=N - B,
        validation=B - A,
        scaler="standard",
        season=SEASON,
        classical=[],  # ARIMA, ETS and Theta: tests/test_classical.py
    )
    return forecast.SeriesDataConfig(**{**options, **overrides})


def model_for(cfg, distribution: str = "point", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(
        {"name": "forecaster", **model_defaults(cfg), "hidden_size": 8, "distribution": distribution}
    )


# ---- prepare --------------------------------------------------------------------------------------


@pytest.mark.parametrize("calendar", [[], ["day_of_week", "day_of_year"]])
def test_prepare_from_a_csv_gives_windows_the_model_defaults_describe(csv, calendar):
    cfg = config(csv, calendar=calendar)
    prepared = forecast.prepare(cfg)
    defaults = model_defaults(cfg)
    assert defaults == {
        "lookback": L,
        "horizon": H,
        "output_size": 1,
        "num_past": 1,
        "num_known": 2 * len(calendar),
    }
    D = defaults["output_size"] + defaults["num_past"] + defaults["num_known"]
    for dataset in (prepared.train, prepared.validation, prepared.test):
        inputs, targets = dataset.tensors
        assert inputs.shape[1:] == (L + H, D) and targets.shape[1:] == (H, 1)
        assert inputs.dtype == torch.float32
    assert len(prepared.test) == N - B - H + 1 and len(prepared.validation) == B - A - H + 1
    assert len(prepared.train) == A - L - H + 1
    model = model_for(cfg)
    assert model.predict(prepared.test.tensors[0]).shape == (N - B - H + 1, H, 1)


def test_prepare_with_saved_preprocessing_reuses_the_scalers_on_another_frame(csv):
    cfg = config(csv)
    saved = forecast.prepare(cfg).preprocessing
    other = table(seed=1)
    other["value"] = 3 * other["value"] + 100  # statistics far from the first table's
    other["humidity"] = other["humidity"] / 10
    reused = forecast.prepare(cfg, copy.deepcopy(saved), frame=other)
    assert reused.preprocessing == saved
    first = table()
    mean, std = first["value"][:A].mean(), first["value"][:A].std(ddof=0)
    h_mean, h_std = first["humidity"][:A].mean(), first["humidity"][:A].std(ddof=0)
    inputs, targets = reused.test.tensors
    origins = np.arange(L - 1, N - H)  # all of the other frame: from the first full lookback
    expected = (other["value"].to_numpy()[origins[:, None] + np.arange(1, H + 1)] - mean) / std  # (S, H)
    np.testing.assert_allclose(targets[..., 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    seen = other["humidity"].to_numpy()[origins[:, None] + np.arange(1 - L, 1)]  # (S, L)
    np.testing.assert_allclose(inputs[:, :L, 1].numpy(), (seen - h_mean) / h_std, rtol=1e-5, atol=1e-5)
    refitted = forecast.prepare(cfg, frame=other)  # new scalers and the config's split
    assert len(refitted.test) < len(targets)
    assert not np.allclose(refitted.test.tensors[1].numpy(), targets[-len(refitted.test) :].numpy())


def test_one_data_source_at_most():
    with pytest.raises(ValueError, match=r"set only one of data\.path, data\.dataset and data\.synthetic"):
        forecast.SeriesDataConfig(path="a.csv", synthetic="sine")


def test_no_data_source_and_no_frame_is_a_data_error():
    with pytest.raises(DataError, match=r"no data: set data\.path, data\.dataset or data\.synthetic"):
        forecast.read_frame(forecast.SeriesDataConfig())


def test_unknown_synthetic_option_is_a_config_error():
    cfg = forecast.SeriesDataConfig(synthetic="sine", synthetic_options={"point": 50})
    with pytest.raises(
        ConfigError,
        match=r"data.synthetic_options: unknown option\(s\) \['point'\] for 'sine'; "
        r"valid options are \['noise', 'points', 'seed'\]",
    ):
        forecast.read_frame(cfg)


FORECAST_CONFIGS = sorted(
    p.stem for p in (ROOT / "configs").glob("*.yaml") if yaml.safe_load(p.read_text())["task"] == "forecast"
)


@pytest.mark.parametrize("name", FORECAST_CONFIGS)
def test_every_shipped_config_prepares_windows_its_model_fits(name):
    data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["data"]
    cfg = forecast.SeriesDataConfig(**data)
    prepared = forecast.prepare(cfg)
    defaults = model_defaults(cfg)
    D = defaults["output_size"] + defaults["num_past"] + defaults["num_known"]
    assert prepared.test.tensors[0].shape[1:] == (cfg.lookback + cfg.horizon, D)
    assert prepared.train.tensors[1].shape[1:] == (cfg.horizon, len(cfg.targets))


# ---- evaluate and the metrics table -------------------------------------------------------------


def by_hand(raw: np.ndarray, horizon: int = H):
    """Actual values (S, H) and each baseline's forecasts (S, H) at the test origins, from the raw series."""
    origins = np.arange(B - 1, N - horizon)  # one forecast from every test step
    actual = raw[origins[:, None] + np.arange(1, horizon + 1)]
    return origins, actual, {name: baseline(name, raw, origins, horizon, SEASON) for name in BASELINES}


@pytest.fixture
def evaluated(csv):
    cfg = config(csv)
    prepared = forecast.prepare(cfg)
    model = model_for(cfg)
    return cfg, prepared, model, forecast.evaluate(model, prepared)


def test_evaluate_reports_the_model_and_every_baseline_at_each_step(evaluated):
    _, _, _, results = evaluated
    assert results["windows"] == N - B - H + 1 and results["horizon"] == H and results["season"] == SEASON
    assert set(results["value"]) == {"h1", f"h{H}", "all"}
    for rows in results["value"].values():
        assert set(rows) == {"model", *BASELINES}
        for metrics in rows.values():
            assert set(metrics) == {"MAE", "RMSE", "MAPE", "sMAPE", "MASE"}
            assert all(np.isfinite(v) for v in metrics.values())


def test_baselines_in_evaluate_equal_a_hand_computation_on_the_raw_series(evaluated):
    _, _, _, results = evaluated
    raw = table()["value"].to_numpy()
    origins, actual, guesses = by_hand(raw)
    scale = np.mean(np.abs(raw[SEASON:A] - raw[: A - SEASON]))  # seasonal naive MAE on the training rows
    assert scale == pytest.approx(seasonal_scale(raw[:A], SEASON))
    # an anchor that uses no rnnkit code at all: persistence one step ahead
    assert results["value"]["h1"]["last_value"]["MAE"] == pytest.approx(
        np.mean(np.abs(raw[origins + 1] - raw[origins])), rel=1e-5
    )
    for key, cols in {"h1": [0], f"h{H}": [H - 1], "all": list(range(H))}.items():
        for name in BASELINES:
            expected = forecast_metrics(actual[:, cols], guesses[name][:, cols], scale)
            got = results["value"][key][name]
            for metric, value in expected.items():
                assert got[metric] == pytest.approx(value, rel=1e-5), (key, name, metric)


def test_model_metrics_in_evaluate_are_its_unscaled_forecasts(evaluated):
    _, prepared, model, results = evaluated
    raw = table()["value"].to_numpy()
    _, actual, _ = by_hand(raw)
    scaled = model.predict(prepared.test.tensors[0]).numpy()[..., 0]  # (S, H)
    mean, std = raw[:A].mean(), raw[:A].std()
    point = scaled * std + mean
    scale = seasonal_scale(raw[:A], SEASON)
    expected = forecast_metrics(actual, point, scale)
    for metric, value in expected.items():
        assert results["value"]["all"]["model"][metric] == pytest.approx(value, rel=1e-4), metric


def test_horizon_one_reports_only_step_one(csv):
    cfg = config(csv, horizon=1)
    results = forecast.evaluate(model_for(cfg), forecast.prepare(cfg))
    assert set(results["value"]) == {"h1"}


def test_metrics_table_names_every_row_and_step(evaluated):
    _, _, _, results = evaluated
    text = forecast.metrics_table(results)
    assert text.startswith(f"test part: {N - B - H + 1} forecast origins, horizon {H}")
    for label in [
        "model",
        "last value (persistence)",
        f"seasonal naive ({SEASON})",
        "drift",
        "mean",
        "value, step 1 ahead:",
        f"value, step {H} ahead:",
        "value, all steps:",
    ]:
        assert label in text, label
    header = next(line for line in text.splitlines() if "MAE" in line)
    assert header.split() == ["MAE", "RMSE", "MAPE", "sMAPE", "MASE", "rank"]
    mase = f"{results['value']['h1']['drift']['MASE']:.3f}"
    assert mase in next(line for line in text.splitlines() if line.strip().startswith("drift"))


def test_a_gaussian_model_gets_interval_coverage(csv):
    cfg = config(csv)
    prepared = forecast.prepare(cfg)
    model = model_for(cfg, "gaussian")
    results = forecast.evaluate(model, prepared)
    for rows in results["value"].values():
        assert 0.0 <= rows["model"]["coverage"] <= 100.0
        assert all("coverage" not in rows[name] for name in BASELINES)
    point, lower, upper = forecast.forecasts(model, prepared.test.tensors[0], prepared.preprocessing)
    _, actual, _ = by_hand(table()["value"].to_numpy())
    inside = (actual >= lower[..., 0]) & (actual <= upper[..., 0])
    assert results["value"]["all"]["model"]["coverage"] == pytest.approx(100 * inside.mean())
    assert np.all(lower <= point) and np.all(point <= upper)
    text = forecast.metrics_table(results)
    header = next(line for line in text.splitlines() if "MAE" in line)
    assert header.split()[-2:] == ["coverage", "rank"]


# ---- forecasting new data -----------------------------------------------------------------------


def stores() -> pd.DataFrame:
    """Two stores under an id column, ending on different days."""
    return pd.concat(
        [table(40).assign(store="north"), table(30, seed=3, start="2023-03-05").assign(store="south")],
        ignore_index=True,
    )


def test_forecast_frame_gives_horizon_rows_per_series_with_future_times_and_intervals():
    frame = stores()
    cfg = config("stores.csv", id_column="store", test=8, validation=0)
    prepared = forecast.prepare(cfg, frame=frame)
    model = model_for(cfg, "gaussian")
    result = forecast_use.forecast_frame(model, frame, cfg, prepared.preprocessing)
    assert list(result.columns) == ["series", "time", "step", "value", "value_lower", "value_upper"]
    assert len(result) == 2 * H
    for key, part in result.groupby("series"):
        last = pd.Timestamp(frame.loc[frame["store"] == key, "date"].iloc[-1])
        assert list(part["time"]) == [last + pd.Timedelta(days=k) for k in range(1, H + 1)]
        assert list(part["step"]) == list(range(1, H + 1))
    assert (result["value_lower"] <= result["value"]).all() and (
        result["value"] <= result["value_upper"]
    ).all()
    shorter = forecast_use.forecast_frame(model, frame, cfg, prepared.preprocessing, horizon=2)
    assert len(shorter) == 2 * 2
    pd.testing.assert_frame_equal(
        shorter.reset_index(drop=True), result[result["step"] <= 2].reset_index(drop=True)
    )


def test_forecast_frame_from_a_cut_table_equals_the_test_window_at_that_origin(csv):
    cfg = config(csv)
    prepared = forecast.prepare(cfg)
    model = model_for(cfg)
    windows = prepared.test_windows
    point, _, _ = forecast.forecasts(model, torch.from_numpy(windows.inputs), prepared.preprocessing)
    frame = table()
    for k in (0, 5, len(windows.origin) - 1):
        origin = windows.origin[k]
        result = forecast_use.forecast_frame(model, frame.iloc[: origin + 1], cfg, prepared.preprocessing)
        assert list(result.columns) == ["time", "step", "value"]  # no id column, no interval
        np.testing.assert_allclose(result["value"].to_numpy(), point[k, :, 0], rtol=1e-5)
        assert str(result["time"].iloc[0].date()) == frame["date"].iloc[origin + 1]


def test_forecast_frame_refuses_a_horizon_beyond_the_model(csv):
    cfg = config(csv)
    prepared = forecast.prepare(cfg)
    asked = H + 2
    with pytest.raises(
        DataError,
        match=rf"this model forecasts up to {H} steps ahead; asked for {asked}: "
        rf"retrain with data.horizon={asked}",
    ):
        forecast_use.forecast_frame(model_for(cfg), table(), cfg, prepared.preprocessing, horizon=asked)
    for asked in (0, -1):
        with pytest.raises(DataError, match=rf"the horizon must be at least 1 step, got {asked}"):
            forecast_use.forecast_frame(model_for(cfg), table(), cfg, prepared.preprocessing, horizon=asked)


def test_forecast_frame_refuses_input_shorter_than_the_lookback(csv):
    cfg = config(csv)
    prepared = forecast.prepare(cfg)
    with pytest.raises(DataError, match=rf"series 'series' has {L - 3} rows; the model reads the last {L}"):
        forecast_use.forecast_frame(model_for(cfg), table(L - 3), cfg, prepared.preprocessing)


def test_forecast_frame_refuses_known_covariates_it_cannot_see_ahead(csv):
    frame = table().assign(plan=1.0)
    cfg = config(csv, known_covariates=["plan"])
    prepared = forecast.prepare(cfg, frame=frame)
    with pytest.raises(
        DataError, match=r"needs future values of \['plan'\]; only calendar features are generated"
    ):
        forecast_use.forecast_frame(model_for(cfg), frame, cfg, prepared.preprocessing)


# ---- the shipped Seattle weather job ------------------------------------------------------------


def test_seattle_weather_tests_on_2015():
    data = yaml.safe_load((ROOT / "configs" / "seattle_weather.yaml").read_text())["data"]
    cfg = forecast.SeriesDataConfig(**data)
    prepared = forecast.prepare(cfg)
    (series,) = prepared.series
    windows = prepared.test_windows
    H7 = cfg.horizon
    first_target, last_target = series.times[windows.origin[0] + 1], series.times[windows.origin[-1] + H7]
    assert first_target == pd.Timestamp("2015-01-01") and last_target == pd.Timestamp("2015-12-31")
    a, b = prepared.bounds[0]
    assert series.times[a] == pd.Timestamp("2014-07-01") and series.times[b] == pd.Timestamp("2015-01-01")
    assert len(windows.origin) == 365 - H7 + 1
    D = prepared.test.tensors[0].shape[2]
    defaults = model_defaults(cfg)
    assert D == defaults["output_size"] + defaults["num_past"] + defaults["num_known"] == 1 + 3 + 2
    assert prepared.train.tensors[1].shape[1:] == (H7, 1)


def test_a_log_transform_models_the_logarithm_and_evaluates_in_the_series_units(tmp_path):
    path = tmp_path / "positive.csv"
    frame = table()
    frame["value"] = np.exp(frame["value"] / 10)  # positive, growing by proportions
    frame.to_csv(path, index=False)
    cfg = config(path, transform="log")
    prepared = forecast.prepare(cfg)
    targets = prepared.test_windows.targets[..., 0]  # scaled log values
    mean, std = np.log(frame["value"][:A]).mean(), np.log(frame["value"][:A]).std(ddof=0)
    np.testing.assert_allclose(targets[0], (np.log(frame["value"][B : B + H]) - mean) / std, rtol=1e-4)
    metrics = forecast.evaluate(model_for(cfg, "gaussian"), prepared)
    persistence = baseline("last_value", frame["value"].to_numpy(), prepared.test_windows.origin, H)
    actual = frame["value"].to_numpy()[prepared.test_windows.origin[:, None] + np.arange(1, H + 1)]
    assert metrics["value"]["h1"]["last_value"]["MAE"] == pytest.approx(
        np.abs(persistence - actual)[:, 0].mean()
    )
    assert 0 <= metrics["value"]["all"]["model"]["coverage"] <= 100

    frame.loc[3, "value"] = 0.0
    frame.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"data.transform log: .*needs positive values.*set data.transform to none"
    ):
        forecast.prepare(config(path, transform="log"))
