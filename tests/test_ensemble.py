"""ForecastEnsemble: an ensemble of one is its forecaster, forecasts are the members' medians, and a
trained ensemble is saved, loaded and reported with its members' spread."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import rnnkit
from rnnkit.models import build_model
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import forecast

SMALL = {"lookback": 8, "horizon": 3, "hidden_size": 8}


def test_an_ensemble_of_one_is_the_forecaster_it_holds_through_a_training_step():
    torch.manual_seed(0)
    ensemble = build_model({"name": "forecast_ensemble", "members": 1, **SMALL})
    torch.manual_seed(0)
    single = build_model({"name": "forecaster", **SMALL})
    for (_, a), b in zip(ensemble.members[0].state_dict().items(), single.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x, y = torch.randn(6, 11, 1), torch.randn(6, 3, 1)
    for model in (ensemble, single):
        optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
        loss, _ = model.loss(x, y)
        loss.backward()
        optimiser.step()
    assert torch.equal(ensemble.predict(x), single.predict(x))
    assert ensemble.loss(x, y)[0].item() == single.loss(x, y)[0].item()


@pytest.mark.parametrize("distribution", ["point", "gaussian", "quantile"])
def test_forecasts_are_the_medians_of_the_members(distribution):
    torch.manual_seed(0)
    model = build_model({"name": "forecast_ensemble", "members": 3, "distribution": distribution, **SMALL})
    x, y = torch.randn(5, 11, 1), torch.randn(5, 3, 1)
    each = model.member_forecasts(x)  # (3, B, H, O)
    assert each.shape == (3, 5, 3, 1) and not torch.equal(each[0], each[1])
    torch.testing.assert_close(model.predict(x), each.median(0).values)
    expected = np.mean([m.loss(x, y)[0].item() for m in model.members])
    assert model.loss(x, y)[0].item() == pytest.approx(expected, rel=1e-6)
    if distribution != "point":
        got = model.predict_interval(x)
        lows = torch.stack([m.predict_interval(x).lower for m in model.members])
        torch.testing.assert_close(got.lower, lows.median(0).values)


def test_a_trained_ensemble_is_saved_loaded_and_reported_with_its_spread(tmp_path):
    t = np.arange(80)
    values = 10 + 0.1 * t + np.sin(t / 3) + np.random.default_rng(0).normal(0, 0.1, 80)
    pd.DataFrame({"value": values.round(3)}).to_csv(tmp_path / "s.csv", index=False)
    config = {
        "task": "forecast", "out_dir": str(tmp_path / "run"),
        "data": {"path": "s.csv", "lookback": 8, "horizon": 2, "test": 10, "validation": 10, "classical": []},
        "model": {"name": "forecast_ensemble", "members": 3, "hidden_size": 4, "revin": True},
        "train": {"epochs": 2, "batch_size": 16, "progress": False, "tensorboard": False},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    metrics = train_run(load_run_config(tmp_path / "c.yaml"), log=lambda _: None)
    assert len(metrics["members"]["value"]) == 3
    text = forecast.metrics_table(metrics)
    assert text.splitlines()[1].startswith(
        "value: an ensemble of 3, combined by the median; its members' MASE"
    )
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    assert len(predictor.model.members) == 3
    table = predictor.forecast(tmp_path / "s.csv")
    assert len(table) == 2 and np.isfinite(table["value"]).all()
