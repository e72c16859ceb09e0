"""Per-series scaling (data.scale: per_series): each series' targets scaled by its own training rows,
inverted exactly; a series never seen in training forecast from its own history (cold start)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.data.scalers import make_scaler
from rnnkit.errors import DataError
from rnnkit.run import train_run
from rnnkit.tasks import forecast

LEVELS = {"small": 10.0, "medium": 300.0, "large": 9000.0}


def shops(levels=LEVELS, n=50, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for shop, level in levels.items():
        t = np.arange(n)
        sales = level * (1 + 0.2 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 0.02 * level, n)
        parts.append(
            pd.DataFrame({"shop": shop, "date": pd.date_range("2024-01-01", periods=n), "sales": sales})
        )
    return pd.concat(parts, ignore_index=True)


def config(**overrides) -> forecast.SeriesDataConfig:
    options = dict(path="x.csv", time_column="date", id_column="shop", targets=["sales"], lookback=7,
                   horizon=2, test=8, validation=0, scale="per_series", classical=[])  # fmt: skip
    return forecast.SeriesDataConfig(**{**options, **overrides})


def test_each_series_is_scaled_by_its_own_training_rows_and_inverted_exactly():
    prepared = forecast.prepare(config(), frame=shops())
    table = prepared.test_windows.table
    own = prepared.preprocessing["series_scalers"]
    assert set(own) == set(LEVELS)
    for i, s in enumerate(prepared.series):
        a = prepared.bounds[i][0]
        rows = table.values[table.offsets[i] : table.offsets[i + 1], 0]  # (N,) the scaled targets
        train = s.targets[:a, 0]
        expected = make_scaler("standard").fit(train).transform(s.targets)[:, 0]
        np.testing.assert_allclose(rows, expected, rtol=1e-6, atol=1e-6)
        assert abs(rows[:a].mean()) < 1e-5 and rows[:a].std() == pytest.approx(1, rel=1e-4)  # its own rows
    windows = prepared.test_windows
    back = table.unscale(windows.targets, windows.series)  # (S, H, 1) in the series' own units
    raw = np.stack(
        [
            prepared.series[i].targets[o + 1 : o + 3]
            for i, o in zip(windows.series, windows.origin, strict=True)
        ]
    )
    np.testing.assert_allclose(back, raw, rtol=1e-6)
    assert back.dtype == np.float32


def test_global_scaling_is_one_scaler_for_all_as_before():
    prepared = forecast.prepare(config(scale="global"), frame=shops())
    assert prepared.preprocessing["series_scalers"] is None
    table = prepared.test_windows.table
    assert all(s is table.target_scalers[0] for s in table.target_scalers)
    scaled = table.values[table.offsets[2] : table.offsets[3], 0]
    assert scaled.mean() > 1  # the large shop sits far above the others' scale


def test_a_new_series_forecasts_from_its_own_history(tmp_path):
    path = tmp_path / "shops.csv"
    shops().to_csv(path, index=False)
    data = config(path=str(path)).model_dump(exclude={"path"}) | {"path": str(path)}
    run = write_run_config(tmp_path, "forecast", data, {"hidden_size": 8}, {"epochs": 3, "batch_size": 8})
    train_run(run, log=lambda _: None)
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    new = shops({"brand_new": 4000.0}, n=30, seed=5)
    table = predictor.forecast(new, horizon=2)
    assert list(table["series"].unique()) == ["brand_new"]
    # the same forecast by hand: its scaler fitted on all 30 rows it came with, the model on its last 7
    history = new["sales"].to_numpy(np.float64)[:, None]
    scaler = make_scaler("standard").fit(history)
    model = predictor.model.eval()
    x = np.zeros((1, 9, model.config.num_features), np.float32)
    x[0, :7, 0] = scaler.transform(history[-7:])[:, 0]
    with torch.no_grad():
        scaled = model.predict(torch.from_numpy(x)).numpy()[0]  # (H, 1)
    np.testing.assert_allclose(table["sales"].to_numpy(), scaler.inverse_transform(scaled)[:, 0], rtol=1e-5)
    assert table["sales"].between(2000, 6000).all()  # in the new series' own range
    with pytest.raises(DataError, match=r"series 'brand_new' was not in the training data"):
        predictor.session().feed(new.iloc[:10])
