"""Forecast metrics and baselines against hand computations on tiny series."""

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.metrics import (
    BASELINES,
    baseline,
    baselines_of_many,
    forecast_metrics,
    log_count_ratio,
    nbsvm_baseline,
    seasonal_scale,
)

ACTUAL = np.array([2.0, 4.0, 5.0, 10.0])
PREDICTED = np.array([3.0, 4.0, 3.0, 12.0])  # errors -1, 0, 2, -2
LOWER = np.array([1.0, 4.0, 4.0, 11.0])
UPPER = np.array([3.0, 4.0, 6.0, 13.0])  # covers 2, 4 (on both edges), 5; misses 10

# Ten values with distinct neighbours, so every baseline gives its own numbers.
SERIES = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])
ORIGINS = np.array([4, 6])  # the last observed rows: histories SERIES[:5] and SERIES[:7]


def test_forecast_metrics_equal_the_hand_computation():
    metrics = forecast_metrics(ACTUAL, PREDICTED, mase_scale=0.5, lower=LOWER, upper=UPPER)
    expected = {
        "MAE": (1 + 0 + 2 + 2) / 4,
        "RMSE": np.sqrt((1 + 0 + 4 + 4) / 4),
        "MAPE": 100 * (1 / 2 + 0 / 4 + 2 / 5 + 2 / 10) / 4,
        "sMAPE": 100 * (2 * 1 / 5 + 0 + 2 * 2 / 8 + 2 * 2 / 22) / 4,
        "MASE": (5 / 4) / 0.5,
        "coverage": 75.0,
    }
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-12), name


def test_forecast_metrics_without_bounds_have_no_coverage():
    metrics = forecast_metrics(ACTUAL, PREDICTED, mase_scale=1.0)
    assert set(metrics) == {"MAE", "RMSE", "MAPE", "sMAPE", "MASE"}
    assert metrics["MASE"] == pytest.approx(metrics["MAE"])


def test_forecast_metrics_on_windows_equal_numpy_formulas():
    rng = np.random.default_rng(0)
    actual = rng.uniform(1, 5, size=(6, 3))  # (S, H), away from zero so MAPE is well defined
    predicted = actual + rng.normal(0, 1, size=(6, 3))
    lower, upper = predicted - 0.5, predicted + 0.5
    metrics = forecast_metrics(actual, predicted, 2.0, lower, upper)
    error = actual - predicted
    assert metrics["MAE"] == pytest.approx(np.abs(error).mean())
    assert metrics["RMSE"] == pytest.approx(np.sqrt((error**2).mean()))
    assert metrics["MAPE"] == pytest.approx(100 * np.mean(np.abs(error) / np.abs(actual)))
    assert metrics["sMAPE"] == pytest.approx(
        100 * np.mean(2 * np.abs(error) / (np.abs(actual) + np.abs(predicted)))
    )
    assert metrics["MASE"] == pytest.approx(np.abs(error).mean() / 2.0)
    assert metrics["coverage"] == pytest.approx(100 * np.mean(np.abs(error) <= 0.5))


@pytest.mark.parametrize(
    ("season", "expected"),
    [(1, (2 + 1 + 4 + 2) / 4), (2, (1 + 3 + 2) / 3), (4, 3.0)],
)
def test_seasonal_scale_is_the_in_sample_seasonal_naive_mae(season, expected):
    train = np.array([1.0, 3.0, 2.0, 6.0, 4.0])
    assert seasonal_scale(train, season) == pytest.approx(expected)


def test_seasonal_scale_of_a_constant_series_is_one_not_zero():
    assert seasonal_scale(np.full(6, 7.0), 2) == 1.0


@pytest.mark.parametrize("length", [3, 4])
def test_seasonal_scale_needs_more_values_than_the_season(length):
    with pytest.raises(
        DataError,
        match=rf"MASE needs more than season=4 training values, got {length}; "
        "lower the season",
    ):
        seasonal_scale(np.arange(length, dtype=float), 4)


def test_last_value_repeats_the_origin():
    np.testing.assert_array_equal(baseline("last_value", SERIES, ORIGINS, 3), [[5, 5, 5], [2, 2, 2]])


def test_seasonal_naive_with_season_one_is_the_last_value():
    np.testing.assert_array_equal(
        baseline("seasonal_naive", SERIES, ORIGINS, 4, season=1), baseline("last_value", SERIES, ORIGINS, 4)
    )


def test_seasonal_naive_with_season_three_and_a_longer_horizon():
    # step h reads row origin + h - 3 * ceil(h / 3): steps 1..3 one season back, step 4 two seasons back
    # origin 4: rows 2, 3, 4, 2 -> 4, 1, 5, 4; origin 6: rows 4, 5, 6, 4 -> 5, 9, 2, 5
    forecast = baseline("seasonal_naive", SERIES, ORIGINS, 4, season=3)
    np.testing.assert_array_equal(forecast, [[4, 1, 5, 4], [5, 9, 2, 5]])


def test_seasonal_naive_with_horizon_equal_to_the_season_is_last_season_again():
    forecast = baseline("seasonal_naive", SERIES, np.array([5]), 3, season=3)
    np.testing.assert_array_equal(forecast, [SERIES[3:6]])


def test_drift_extends_the_line_through_first_and_last_observation():
    forecast = baseline("drift", SERIES, ORIGINS, 3)
    slopes = [(5 - 3) / 4, (2 - 3) / 6]  # (last - first) / (observations - 1)
    expected = [[5 + slopes[0] * h for h in (1, 2, 3)], [2 + slopes[1] * h for h in (1, 2, 3)]]
    np.testing.assert_allclose(forecast, expected)


def test_drift_from_the_first_row_is_flat():
    np.testing.assert_array_equal(baseline("drift", SERIES, np.array([0]), 2), [[3, 3]])


def test_mean_is_the_mean_of_the_whole_history():
    forecast = baseline("mean", SERIES, ORIGINS, 2)
    np.testing.assert_allclose(forecast, [[14 / 5, 14 / 5], [25 / 7, 25 / 7]])


@pytest.mark.parametrize("name", BASELINES)
def test_no_baseline_reads_past_its_origin(name):
    for origin in (3, 5, 7):
        later_changed = SERIES.copy()
        later_changed[origin + 1 :] = 1e6
        np.testing.assert_array_equal(
            baseline(name, later_changed, np.array([origin]), 2, season=2),
            baseline(name, SERIES, np.array([origin]), 2, season=2),
        )


def test_seasonal_naive_needs_a_season_of_history():
    np.testing.assert_array_equal(
        baseline("seasonal_naive", SERIES, np.array([2]), 1, season=3), [[SERIES[0]]]
    )
    with pytest.raises(
        DataError, match=r"seasonal naive needs a season \(3\) of history before every forecast"
    ):
        baseline("seasonal_naive", SERIES, np.array([4, 1]), 1, season=3)


def test_unknown_baseline_is_refused_with_the_valid_names():
    with pytest.raises(
        DataError,
        match=r"unknown baseline 'naive'; expected one of \['last_value', "
        r"'seasonal_naive', 'drift', 'mean'\]",
    ):
        baseline("naive", SERIES, ORIGINS, 2)


def test_log_count_ratios_equal_the_hand_count():
    from scipy.sparse import csr_matrix

    #                   good  bad  film
    features = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1]])
    positive = np.array([True, True, False])
    # p = 1 + [2, 0, 1] = [3, 1, 2] (sum 6); q = 1 + [0, 1, 1] = [1, 2, 2] (sum 5)
    expected = np.log([3 / 6, 1 / 6, 2 / 6]) - np.log([1 / 5, 2 / 5, 2 / 5])
    np.testing.assert_allclose(log_count_ratio(features, positive), expected)
    np.testing.assert_allclose(log_count_ratio(csr_matrix(features), positive), expected)


@pytest.mark.parametrize("classes", [2, 3])
def test_nbsvm_finds_the_words_that_decide_the_class(classes):
    rng = np.random.default_rng(0)
    cue = ["great", "awful", "fine"][:classes]
    filler = ["the", "a", "film", "plot", "actor", "scene", "long", "short"]

    def texts(n):
        labels = rng.integers(0, classes, n)
        return [" ".join([*rng.choice(filler, 6), cue[y]]) for y in labels], labels.tolist()

    train, test = texts(90), texts(40)
    result = nbsvm_baseline(*train, *test)
    assert result["accuracy"] == 1.0 and result["f1_macro"] == 1.0


@pytest.mark.parametrize("name", ["last_value", "seasonal_naive", "drift", "mean"])
def test_baselines_of_many_series_at_once_equal_each_series_alone(name):
    rng = np.random.default_rng(0)
    series = [rng.normal(10 * i, 1, n) for i, n in enumerate([30, 12, 45])]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in series])])
    origins = [np.arange(8, len(s) - 3, 2) for s in series]
    which = np.concatenate([np.full(len(o), i) for i, o in enumerate(origins)])
    together = baselines_of_many(name, np.concatenate(series), offsets, which, np.concatenate(origins), 3, 7)
    alone = np.concatenate([baseline(name, s, o, 3, 7) for s, o in zip(series, origins, strict=True)])
    np.testing.assert_allclose(together, alone, rtol=1e-12)
    with pytest.raises(DataError, match="seasonal naive needs a season"):
        baselines_of_many(
            "seasonal_naive", np.concatenate(series), offsets, np.array([1]), np.array([3]), 3, 7
        )
