"""Synthetic series: reproducible with a seed, the sine example's numbers, a calendar-aligned season."""

import numpy as np
import pytest

from rnnkit.data.synthetic import noisy_sine, seasonal_temperature, seasonal_temperature_frame
from rnnkit.errors import DataError


@pytest.mark.parametrize(("points", "noise", "seed"), [(100, 0.1, 0), (37, 0.5, 3), (1, 0.0, 9)])
def test_noisy_sine_matches_the_sine_example(points, noise, seed):
    ours = noisy_sine(points=points, noise=noise, seed=seed)
    assert ours.shape == (points,) and ours.dtype == np.float32
    seeds = np.sin(np.linspace(0, 50, points)) + np.random.default_rng(seed).normal(0, noise, points)
    np.testing.assert_array_equal(ours, seeds.astype(np.float32))  # the seeds' script, line for line


def test_noisy_sine_is_sine_plus_noise():
    np.testing.assert_allclose(noisy_sine(200, noise=0.0), np.sin(np.linspace(0, 50, 200)), atol=1e-6)
    residual = noisy_sine(20000, noise=0.3, seed=1) - np.sin(np.linspace(0, 50, 20000))
    assert abs(residual.std() - 0.3) < 0.01


@pytest.mark.parametrize("generate", [noisy_sine, seasonal_temperature])
def test_same_seed_same_numbers_other_seed_other_numbers(generate):
    np.testing.assert_array_equal(generate(seed=4), generate(seed=4))
    assert not np.array_equal(generate(seed=4), generate(seed=5))


def test_seasonal_temperature_is_coldest_mid_january_and_warmest_mid_july():
    clean = seasonal_temperature(days=4 * 365, mean=15.0, amplitude=10.0, noise=0.0)
    assert clean.shape == (1460,) and clean.dtype == np.float32
    assert int(np.argmin(clean[:365])) == 14  # 15 January
    assert 195 <= int(np.argmax(clean[:365])) <= 197  # half a year later: mid July
    assert abs(int(np.argmin(clean[365 * 3 :])) - 14) <= 1  # still aligned three years on
    np.testing.assert_allclose([clean.min(), clean.max()], [5.0, 25.0], atol=1e-3)
    np.testing.assert_allclose(clean[:1461].mean(), 15.0, atol=0.05)


def test_seasonal_temperature_noise_is_gaussian_of_the_given_std():
    days = 20000
    residual = seasonal_temperature(days, noise=2.0, seed=2) - seasonal_temperature(days, noise=0.0)
    assert abs(residual.std() - 2.0) < 0.05 and abs(residual.mean()) < 0.05


def test_frame_has_dates_from_2020_and_the_same_temperatures():
    frame = seasonal_temperature_frame(days=800, seed=7)
    assert set(frame) == {"date", "temperature"}
    assert frame["date"].dtype == np.dtype("datetime64[D]") and frame["date"].shape == (800,)
    assert frame["date"][0] == np.datetime64("2020-01-01") and frame["date"][-1] == np.datetime64(
        "2022-03-10"
    )
    assert (np.diff(frame["date"]) == np.timedelta64(1, "D")).all()
    np.testing.assert_array_equal(frame["temperature"], seasonal_temperature(days=800, seed=7))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: noisy_sine(points=0), r"points must be a positive int, got 0"),
        (lambda: noisy_sine(noise=-0.1), r"noise is a standard deviation and must be >= 0, got -0.1"),
        (lambda: seasonal_temperature(days=2.5), r"days must be a positive int, got 2.5"),
        (lambda: seasonal_temperature_frame(noise=float("nan")), r"must be >= 0, got nan"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(DataError, match=message):
        call()
