"""Synthetic series for examples and tests: float32 numpy arrays, the same numbers for the same seed.

    series = noisy_sine(points=200, seed=1)          # (200,)
    frame = seasonal_temperature_frame(days=730)    # {"date": (730,) datetime64[D], "temperature": (730,)}

Noise comes from ``numpy.random.default_rng(seed)``, never from the global numpy state.
"""

from __future__ import annotations

import numpy as np

from rnnkit.errors import DataError

START_DATE = np.datetime64("2020-01-01", "D")
YEAR_DAYS = 365.25
COLDEST_DAY = 14  # days after 1 January: the 15th day of the year


def noisy_sine(points: int = 100, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """sin(t) for ``points`` values of t evenly spaced over [0, 50], plus N(0, noise) noise; (points,).

    The series of the seeds' sine example (``configs/sine.yaml``): same seed, same numbers.
    """
    _check(points=points, noise=noise)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 50, points)  # (points,)
    return (np.sin(t) + rng.normal(0, noise, points)).astype(np.float32)


def seasonal_temperature(
    days: int = 3 * 365, mean: float = 15.0, amplitude: float = 10.0, noise: float = 2.0, seed: int = 0
) -> np.ndarray:
    """A daily temperature (°C) with a yearly cycle, starting on 1 January; (days,).

    temperature[d] = mean - amplitude * cos(2π (d - 14) / 365.25) + N(0, noise)

    so day 14 (15 January) is the coldest of each year on average and mid July the warmest; the
    period of 365.25 days keeps the cycle aligned with the calendar over leap years.
    """
    _check(days=days, noise=noise)
    rng = np.random.default_rng(seed)
    d = np.arange(days)  # (days,)
    cycle = -np.cos(2 * np.pi * (d - COLDEST_DAY) / YEAR_DAYS)  # (days,), -1 on the coldest day
    return (mean + amplitude * cycle + rng.normal(0, noise, days)).astype(np.float32)


def seasonal_temperature_frame(
    days: int = 3 * 365, mean: float = 15.0, amplitude: float = 10.0, noise: float = 2.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """{"date": (days,) datetime64[D] from 2020-01-01, "temperature": :func:`seasonal_temperature`}.

    A plain dict of columns (no pandas): ``pandas.DataFrame(frame)`` turns it into a table.
    """
    temperature = seasonal_temperature(days, mean, amplitude, noise, seed)
    return {"date": START_DATE + np.arange(days), "temperature": temperature}


def _check(noise: float, **counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"{name} must be a positive int, got {value!r}")
    if not noise >= 0:
        raise DataError(f"noise is a standard deviation and must be >= 0, got {noise!r}")
