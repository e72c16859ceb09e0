"""Scalers: round trips, fitting on the training part only, exact saved state, constant columns, errors."""

import json

import numpy as np
import pytest

from rnnkit.data.scalers import (
    LogScaler,
    MinMaxScaler,
    RobustScaler,
    Scaler,
    StandardScaler,
    make_scaler,
    scaler_from_state,
)
from rnnkit.errors import ConfigError, DataError

NAMES = ["none", "minmax", "standard", "robust"]
FITTED = ["minmax", "standard", "robust"]


def series(n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal([10.0, -3.0, 0.0], [5.0, 0.1, 100.0], size=(n, 3))  # (n, 3) float64


def test_make_scaler_gives_each_kind():
    kinds = {name: type(make_scaler(name)) for name in NAMES}
    assert kinds == {
        "none": Scaler,
        "minmax": MinMaxScaler,
        "standard": StandardScaler,
        "robust": RobustScaler,
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inverse_undoes_transform_and_keeps_shape_and_dtype(name, dtype):
    x = series().astype(dtype)
    scaler = make_scaler(name).fit(x)
    scaled = scaler.transform(x)
    assert scaled.shape == x.shape and scaled.dtype == dtype
    back = scaler.inverse_transform(scaled)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, x, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_series_stay_one_dimensional(name):
    x = series()[:, 0]
    scaled = make_scaler(name).fit_transform(x)
    assert scaled.shape == (50,)
    np.testing.assert_allclose(make_scaler(name).fit(x[:, None]).transform(x[:, None])[:, 0], scaled)


def test_integer_input_gives_float64():
    assert make_scaler("standard").fit_transform(np.arange(10)).dtype == np.float64


def test_each_kind_maps_its_statistics_where_it_says():
    x = series(201)
    low, high = -1.0, 2.0
    minmax = MinMaxScaler((low, high)).fit_transform(x)
    np.testing.assert_allclose(minmax.min(0), low)
    np.testing.assert_allclose(minmax.max(0), high)
    standard = StandardScaler().fit_transform(x)
    np.testing.assert_allclose(standard.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(standard.std(0), 1)
    robust = RobustScaler().fit_transform(x)
    q25, median, q75 = np.percentile(robust, [25, 50, 75], axis=0)
    np.testing.assert_allclose(median, 0, atol=1e-12)
    np.testing.assert_allclose(q75 - q25, 1)
    np.testing.assert_array_equal(make_scaler("none").fit_transform(x), x)


@pytest.mark.parametrize("name", FITTED)
def test_statistics_come_from_the_fitted_part_only(name):
    x = series(100)
    x[80:] += 1000.0  # the held-out part drifts far away
    scaler = make_scaler(name).fit(x[:80])
    np.testing.assert_array_equal(scaler.transform(x[:80]), make_scaler(name).fit_transform(x[:80]))
    assert np.abs(scaler.transform(x[:80])).max() < 10
    assert scaler.transform(x[80:])[:, 0].min() > 10  # scaled with the training statistics, not its own


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fitted", [True, False])
def test_state_survives_json_exactly(name, fitted):
    scaler = MinMaxScaler((-1, 1)) if name == "minmax" else make_scaler(name)
    x = series()
    if fitted:
        scaler.fit(x)
    state = scaler.state_dict()
    text = json.dumps(state)  # plain lists and floats only
    again = scaler_from_state(json.loads(text))
    assert type(again) is type(scaler) and again.state_dict() == state
    assert state["kind"] == name
    if fitted:
        np.testing.assert_array_equal(again.transform(x), scaler.transform(x))
        np.testing.assert_array_equal(again.inverse_transform(x), scaler.inverse_transform(x))
    elif name != "none":
        with pytest.raises(DataError, match="not fitted"):
            again.transform(x)


def test_state_names_its_statistics():
    state = MinMaxScaler().fit(np.array([[1.0, 5.0], [3.0, 5.0]])).state_dict()
    assert state == {"kind": "minmax", "feature_range": [0.0, 1.0], "min": [1.0, 5.0], "max": [3.0, 5.0]}
    assert StandardScaler().fit(np.array([1.0, 3.0])).state_dict() == {
        "kind": "standard",
        "mean": [2.0],
        "std": [1.0],
    }


@pytest.mark.parametrize(("name", "constant_to"), [("minmax", 0.0), ("standard", 0.0), ("robust", 0.0)])
def test_constant_columns_get_scale_one(name, constant_to):
    x = np.column_stack([np.full(20, 0.1), np.zeros(20), np.linspace(-2, 7, 20)]).astype(np.float32)
    scaler = make_scaler(name).fit(x)
    scaled = scaler.transform(x)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled[:, :2], constant_to, atol=1e-6)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), x, atol=1e-6)
    np.testing.assert_allclose(MinMaxScaler((-1, 1)).fit_transform(np.full(4, 3.0)), -1.0)  # the low end


def test_rounding_noise_in_a_constant_column_is_not_a_spread_but_a_tiny_real_spread_is():
    constant = np.full(1000, 7.7)
    assert constant.std() > 0  # the mean rounds, so the population std is not exactly zero
    np.testing.assert_allclose(StandardScaler().fit_transform(constant), 0.0, atol=1e-12)  # not -1
    tiny = np.array([1e-9, 2e-9, 3e-9])
    np.testing.assert_allclose(MinMaxScaler().fit_transform(tiny), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(StandardScaler().fit_transform(tiny), [-1.2247449, 0.0, 1.2247449])


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_fit_names_the_rows(name):
    x = series(10)
    x[2, 1] = np.nan
    x[7, 0] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf at 2 rows \[2, 7\]: fill or drop them"):
        make_scaler(name).fit(x)


@pytest.mark.parametrize("name", FITTED)
def test_transform_before_fit_says_to_fit_on_the_training_part(name):
    scaler = make_scaler(name)
    message = r"is not fitted: call fit on the training part first"
    with pytest.raises(DataError, match=message):
        scaler.transform(series())
    with pytest.raises(DataError, match=message):
        scaler.inverse_transform(series())


@pytest.mark.parametrize("name", FITTED)
def test_column_count_must_match_the_fit(name):
    scaler = make_scaler(name).fit(series())
    with pytest.raises(DataError, match=r"fitted on 3 columns, got values of shape \(5, 2\)"):
        scaler.transform(np.zeros((5, 2)))
    with pytest.raises(DataError, match=r"fitted on 3 columns, got values of shape \(5,\)"):
        scaler.transform(np.zeros(5))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros((0, 3)), r"fit needs values of shape \(N,\) or \(N, F\) with N, F >= 1, got \(0, 3\)"),
        (np.zeros((2, 3, 4)), r"got \(2, 3, 4\)"),
    ],
)
def test_fit_refuses_empty_or_high_rank_input(values, message):
    with pytest.raises(DataError, match=message):
        make_scaler("standard").fit(values)


def test_transform_refuses_high_rank_input():
    with pytest.raises(DataError, match=r"values must be \(N,\) or \(N, F\), got shape \(2, 3, 4\)"):
        make_scaler("none").transform(np.zeros((2, 3, 4)))


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown scaler 'minmx'.*Did you mean 'minmax'\?"):
        make_scaler("minmx")
    with pytest.raises(ConfigError, match=r"unknown scaler 'zscore'; expected one of"):
        scaler_from_state({"kind": "zscore"})


def test_state_missing_keys_and_bad_feature_range_are_refused():
    with pytest.raises(ConfigError, match=r"standard scaler state lacks \['std'\]"):
        scaler_from_state({"kind": "standard", "mean": [0.0]})
    with pytest.raises(
        ConfigError, match=r"feature_range must be \(low, high\) with low < high, got \(1, 0\)"
    ):
        MinMaxScaler((1, 0))


@pytest.mark.parametrize("name", ["standard", "minmax", "robust"])
def test_a_log_scaler_takes_the_log_then_the_affine_map_and_back(name):
    values = np.array([[1.0, 100.0], [2.0, 300.0], [8.0, 900.0]])
    scaler = LogScaler(make_scaler(name)).fit(values)
    np.testing.assert_allclose(scaler.transform(values), make_scaler(name).fit_transform(np.log(values)))
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values)), values)
    again = scaler_from_state(json.loads(json.dumps(scaler.state_dict())))
    assert isinstance(again, LogScaler) and again.state_dict() == scaler.state_dict()
    assert scaler.inverse_transform(np.array([[1e6, 0.0]]))[0, 0] < np.inf  # no overflow to inf
    with pytest.raises(
        DataError, match=r"log transform needs positive values, but column\(s\) \[1\] hold -3"
    ):
        scaler.transform(np.array([[1.0, -3.0]]))
