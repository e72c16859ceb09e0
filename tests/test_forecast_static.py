"""Static covariates (one value per series): numeric ones are known covariates on every row, the
horizon's included; categorical ones are coded against training's categories (0: one never seen)
and embedded by the forecaster; both reach the model, in training and in forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.errors import DataError
from rnnkit.models import build_model
from rnnkit.run import train_run
from rnnkit.tasks import forecast


def shops(n=40) -> pd.DataFrame:
    parts = []
    for shop, (size, region) in {"a": (10.0, "north"), "b": (250.0, "south"), "c": (40.0, "north")}.items():
        t = np.arange(n)
        sales = size * (1 + 0.3 * np.sin(2 * np.pi * t / 7 + (region == "south") * np.pi))
        dates = pd.date_range("2024-01-01", periods=n)
        parts.append(
            pd.DataFrame({"shop": shop, "date": dates, "sales": sales, "size": size, "region": region})
        )
    return pd.concat(parts, ignore_index=True)


def config(**overrides):
    options = dict(path="x.csv", time_column="date", id_column="shop", targets=["sales"], lookback=7,
                   horizon=2, test=6, validation=0, calendar=["day_of_week"], static_covariates=["size"],
                   static_categoricals=["region"], classical=[], combine=[])  # fmt: skip
    return forecast.SeriesDataConfig(**{**options, **overrides})


def test_static_columns_are_in_every_window_row():
    prepared = forecast.prepare(config(), frame=shops())
    assert prepared.preprocessing["static_vocabulary"] == {"region": ["north", "south"]}
    keys = forecast.ForecastTask().model_keys(config(), prepared).fixed
    assert keys["num_known"] == 2 + 1 and keys["static_cardinalities"] == [3]  # sin, cos, size; 0 + 2 regions
    windows = prepared.test_windows
    inputs = windows.inputs  # (S, L + H, 1 target + 3 known + 1 code)
    assert inputs.shape[2] == 1 + 3 + 1
    for i, s in enumerate(prepared.series):
        mine = inputs[windows.series == i]
        codes = mine[..., -1]
        assert (codes == {"north": 1, "south": 2}[s.categories[0]]).all()  # horizon rows too, never scaled
        size = mine[..., 3]  # the static numeric, scaled like the known covariates: constant in the series
        assert np.ptp(size) == 0 and not np.isclose(size[0, 0], {"a": 10, "b": 250, "c": 40}[s.key])
    sizes = [inputs[windows.series == i][0, 0, 3] for i in range(3)]
    assert sizes[0] < sizes[2] < sizes[1]  # their order survives the scaling


def test_the_category_changes_the_forecast_and_its_embedding_learns():
    torch.manual_seed(0)
    model = build_model({"name": "forecaster", "lookback": 7, "horizon": 2, "num_known": 3,
                         "static_cardinalities": [3], "hidden_size": 8})  # fmt: skip
    x = torch.randn(4, 9, 5)
    x[..., -1] = 1.0
    other = x.clone()
    other[..., -1] = 2.0
    assert not torch.allclose(model.predict(x), model.predict(other))  # the code reaches the output
    before = model.static[0].weight.detach().clone()
    loss, _ = model.loss(x, torch.randn(4, 2, 1))
    loss.backward()
    assert model.static[0].weight.grad[1].abs().sum() > 0 and model.static[0].weight.grad[2].abs().sum() == 0
    assert torch.equal(model.static[0].weight.detach(), before)
    bad = x.clone()
    bad[0, 0, -1] = 5.0
    with pytest.raises(DataError, match=r"static category codes must lie in 0 \.\. cardinality - 1 \[3\]"):
        model.predict(bad)


def test_a_trained_model_forecasts_a_new_shop_of_an_unseen_region(tmp_path):
    path = tmp_path / "shops.csv"
    shops().to_csv(path, index=False)
    data = config().model_dump() | {"path": str(path)}
    train_run(
        write_run_config(tmp_path, "forecast", data, {"hidden_size": 8}, {"epochs": 2}), log=lambda _: None
    )
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    assert predictor.model.config.static_cardinalities == [3]
    new = shops().query("shop == 'b'").assign(shop="d", region="west", size=60.0)
    table = predictor.forecast(new, horizon=2)
    assert list(table["series"].unique()) == ["d"] and np.isfinite(table["sales"]).all()
    session = predictor.session()
    first = session.feed(shops().query("shop == 'a'").iloc[:10])
    assert first is not None and len(first) == 2


def test_a_static_column_that_changes_within_a_series_is_refused():
    frame = shops()
    frame.loc[5, "size"] = 11.0
    with pytest.raises(DataError, match=r"static column 'size' of series 'a' must hold one value per series"):
        forecast.prepare(config(), frame=frame)
