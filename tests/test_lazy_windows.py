"""Lazy windows (each series stored once, windows gathered from (series, origin) pairs) equal the
windows rnnkit used to materialise, on series of different lengths and start dates, with past and
known covariates and calendar features, for every stride and part; a DataLoader's batches built with
one gather equal the stacked single windows; and training reads them to the same weights, for every
forecasting strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.data.scalers import make_scaler
from rnnkit.data.series import Columns, load_series
from rnnkit.data.windows import SeriesScaling, WindowDataset, collate_windows, make_windows, scaled_table
from rnnkit.models import build_model
from rnnkit.tasks import forecast
from rnnkit.train.options import TrainConfig
from rnnkit.train.trainer import Trainer

COLUMNS = Columns(time="date", targets=("sales", "returns"), past=("visits",), known=("promo",), id="shop")


def materialised(all_series, lookback, horizon, bounds, scalers, stride=1):
    """The windows as rnnkit built them before they were lazy: every window copied out in full."""
    inputs, targets, series, origin = [], [], [], []
    for index, (s, (start, end)) in enumerate(zip(all_series, bounds, strict=True)):
        values = np.concatenate([scalers[0].transform(s.targets), scalers[1].transform(s.past),
                                 scalers[2].transform(s.known)], 1)  # fmt: skip
        origins = np.arange(max(start, lookback) - 1, end - horizon, stride)
        if origins.size == 0:
            continue
        window = values[origins[:, None] + np.arange(1 - lookback, horizon + 1)]
        window[:, lookback:, : s.targets.shape[1] + s.past.shape[1]] = 0.0
        inputs.append(window)
        targets.append(values[origins[:, None] + np.arange(1, horizon + 1), : s.targets.shape[1]])
        series.append(np.full(origins.size, index))
        origin.append(origins)
    return tuple(np.concatenate(p) for p in (inputs, targets, series, origin))


def shops() -> pd.DataFrame:
    """Three shops of 40, 23 and 61 days starting on different dates, rows interleaved by date."""
    rng = np.random.default_rng(0)
    parts = []
    for shop, (n, start) in {
        "a": (40, "2024-01-03"),
        "b": (23, "2024-02-11"),
        "c": (61, "2023-12-20"),
    }.items():
        parts.append(
            pd.DataFrame(
                {
                    "shop": shop,
                    "date": pd.date_range(start, periods=n, freq="D"),
                    "sales": rng.normal(100, 10, n),
                    "returns": rng.normal(5, 1, n),
                    "visits": rng.normal(1000, 50, n),
                    "promo": rng.integers(0, 2, n).astype(float),
                }
            )
        )
    return pd.concat(parts).sort_values(["date", "shop"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def series_and_scalers():
    all_series = load_series(shops(), COLUMNS, ("day_of_week", "month"))
    scalers = [make_scaler("standard").fit(np.concatenate([getattr(s, f) for s in all_series]))
               for f in ("targets", "past", "known")]  # fmt: skip
    return all_series, scalers


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize(("lookback", "horizon"), [(1, 1), (7, 3), (14, 7)])
@pytest.mark.parametrize("part", ["whole", "train", "test"])
def test_lazy_windows_equal_the_materialised_ones(series_and_scalers, lookback, horizon, stride, part):
    all_series, scalers = series_and_scalers
    n = [len(s.targets) for s in all_series]
    bounds = {
        "whole": [(0, m) for m in n],
        "train": [(0, m - 8) for m in n],
        "test": [(m - 8, m) for m in n],
    }[part]
    lazy = make_windows(
        all_series,
        lookback,
        horizon,
        bounds,
        stride=stride,
        table=scaled_table(all_series, SeriesScaling(*scalers)),
    )
    inputs, targets, series, origin = materialised(all_series, lookback, horizon, bounds, scalers, stride)
    np.testing.assert_array_equal(lazy.series, series)
    np.testing.assert_array_equal(lazy.origin, origin)
    np.testing.assert_allclose(lazy.inputs, inputs, rtol=0, atol=1e-6)  # float32 against float64 scaling
    np.testing.assert_allclose(lazy.targets, targets, rtol=0, atol=1e-6)
    assert lazy.inputs.dtype == np.float32 and lazy.inputs.shape[2] == 2 + 1 + 1 + 4  # + sin, cos of 2
    rows = np.random.default_rng(1).permutation(len(lazy))[:9]
    np.testing.assert_array_equal(lazy.inputs_of(rows), lazy.inputs[rows])
    np.testing.assert_array_equal(lazy.targets_of(rows), lazy.targets[rows])
    assert len(set(lazy.series.tolist())) >= 2  # windows of several shops (short ones may have none)


def test_a_window_costs_its_indices_not_its_rows(series_and_scalers):
    all_series, scalers = series_and_scalers
    table = scaled_table(all_series, SeriesScaling(*scalers))
    n = [len(s.targets) for s in all_series]
    windows = make_windows(all_series, 14, 7, [(0, m) for m in n], table=table)
    assert windows.table is table
    held = windows.series.nbytes + windows.origin.nbytes
    assert held == 16 * len(windows)  # two int64 a window, whatever the lookback
    assert table.values.nbytes == sum(n) * table.values.shape[1] * 4  # one float32 copy of the table


def test_a_loaders_batches_are_one_gather_of_the_same_windows(series_and_scalers):
    all_series, scalers = series_and_scalers
    n = [len(s.targets) for s in all_series]
    windows = make_windows(
        all_series, 7, 3, [(0, m) for m in n], table=scaled_table(all_series, SeriesScaling(*scalers))
    )
    dataset = WindowDataset(windows)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    gathered = list(DataLoader(dataset, batch_size=16, sampler=order, collate_fn=collate_windows))
    one_by_one = [collate_windows([dataset[i] for i in order[k : k + 16]]) for k in range(0, len(order), 16)]
    assert len(gathered) == len(one_by_one)
    for a, b in zip(gathered, one_by_one, strict=True):
        torch.testing.assert_close(a.inputs, b.inputs, rtol=0, atol=0)
        torch.testing.assert_close(a.targets, b.targets, rtol=0, atol=0)


@pytest.mark.parametrize("strategy", ["direct", "recursive", "seq2seq"])
def test_training_on_lazy_windows_gives_the_weights_of_materialised_ones(strategy):
    cfg = forecast.SeriesDataConfig(
        path="x.csv", time_column="date", id_column="shop", targets=["sales", "returns"],
        known_covariates=["promo"], calendar=["day_of_week"], lookback=7, horizon=3, test=5, validation=0,
    )  # fmt: skip
    prepared = forecast.prepare(cfg, frame=shops())
    lazy = prepared.train
    reference = TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a)) for a in
                                (lazy.windows.inputs, lazy.windows.targets)))  # fmt: skip
    weights = []
    for dataset, collate in ((lazy, collate_windows), (reference, None)):
        torch.manual_seed(0)
        model = build_model({"name": "forecaster", "output_size": 2, "num_known": 3, "lookback": 7,
                             "horizon": 3, "hidden_size": 8, "strategy": strategy})  # fmt: skip
        train = TrainConfig(epochs=2, batch_size=8, progress=False, tensorboard=False, seed=0)
        Trainer(model, train, **({"collate": collate} if collate else {})).fit(dataset)
        weights.append(model.state_dict())
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)
