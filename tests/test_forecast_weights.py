"""Sample weights (data.sample_weight): the trainer draws each training window in proportion to the
weight of its last observed row, the same draws for a seed and epoch, split across processes as one
process draws them; a window of weight 0 is never drawn; bad weights are named with their rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rnnkit.data.windows import WindowDataset
from rnnkit.errors import DataError
from rnnkit.models import build_model
from rnnkit.tasks import forecast
from rnnkit.train.batches import epoch_order
from rnnkit.train.options import TrainConfig
from rnnkit.train.trainer import Trainer


def test_draws_follow_the_weights_and_repeat_for_a_seed_and_epoch():
    weights = np.array([0.0, 1.0, 3.0, 0.0, 4.0])
    counts = np.zeros(5)
    for epoch in range(400):
        order = epoch_order(5, True, seed=3, epoch=epoch, weights=weights)
        assert len(order) == 5
        counts += np.bincount(order, minlength=5)
    assert counts[0] == counts[3] == 0  # weight 0: never drawn
    np.testing.assert_allclose(counts / counts.sum(), weights / weights.sum(), atol=0.02)
    assert epoch_order(5, True, 3, 7, weights=weights) == epoch_order(5, True, 3, 7, weights=weights)
    assert epoch_order(5, True, 3, 7, weights=weights) != epoch_order(5, True, 3, 8, weights=weights)
    one = epoch_order(6, True, 3, 7, weights=np.ones(6))
    ranks = [epoch_order(6, True, 3, 7, rank, 2, weights=np.ones(6)) for rank in range(2)]
    assert [i for pair in zip(*ranks, strict=True) for i in pair] == one  # dealt by rank as one process
    with pytest.raises(DataError, match="sample weights must be 3 finite values >= 0, not all 0"):
        epoch_order(3, True, 0, 0, weights=np.zeros(3))


def shops(weight_of_b: float = 0.0) -> pd.DataFrame:
    rows = []
    for shop, level, weight in (("a", 10.0, 1.0), ("b", 500.0, weight_of_b)):
        for t in range(40):
            rows.append({"shop": shop, "date": pd.Timestamp("2024-01-01") + pd.Timedelta(days=t),
                         "sales": level + np.sin(t), "w": weight})  # fmt: skip
    return pd.DataFrame(rows)


def config(**overrides):
    options = dict(path="x.csv", time_column="date", id_column="shop", targets=["sales"], lookback=5,
                   horizon=2, test=6, validation=0, sample_weight="w", classical=[], combine=[])  # fmt: skip
    return forecast.SeriesDataConfig(**{**options, **overrides})


class Seen(WindowDataset):
    """Records the windows a DataLoader asks for."""

    def __init__(self, windows) -> None:
        super().__init__(windows)
        self.rows: list[int] = []

    def __getitems__(self, indices):
        self.rows += list(indices)
        return super().__getitems__(indices)


def test_a_series_of_weight_zero_is_never_trained_on():
    prepared = forecast.prepare(config(), frame=shops(0.0))
    windows = prepared.train.windows
    np.testing.assert_array_equal(windows.weights, np.where(windows.series == 0, 1.0, 0.0))
    seen = Seen(windows)
    model = build_model({"name": "forecaster", "lookback": 5, "horizon": 2, "hidden_size": 4})
    settings = TrainConfig(epochs=3, batch_size=8, progress=False, tensorboard=False)
    Trainer(model, settings, collate=prepared.collate).fit(seen)
    assert len(seen.rows) == 3 * len(windows)  # an epoch draws as many windows as there are
    assert set(windows.series[seen.rows]) == {0}  # never a window of shop b
    assert prepared.test_windows.weights is not None and len(prepared.test.windows) > 0


def test_weights_are_for_training_only_and_bad_ones_are_named():
    frame = shops(2.0)
    frame.loc[45, "w"] = -1.0
    with pytest.raises(
        DataError, match=r"sample weights 'w' of series 'b' must be numbers >= 0; rows \[46\]"
    ):
        forecast.prepare(config(), frame=frame)
    prepared = forecast.prepare(config(), frame=shops(2.0))
    evaluated = forecast.prepare(config(), prepared.preprocessing, frame=shops(2.0).drop(columns="w"))
    assert evaluated.test_windows.weights is None and len(evaluated.test_windows) > 0
    assert torch.is_tensor(evaluated.test[0][0])
