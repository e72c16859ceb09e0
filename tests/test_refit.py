"""Backtests that refit (evaluate.refit_every): every block of origins is forecast by a model retrained
on the rows up to the block's first origin and nothing after, warm-started from the trained one."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_forecast_task import config, model_for, table

from rnnkit.errors import ConfigError
from rnnkit.refit import refit_forecasts
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import forecast
from rnnkit.tasks.forecast_eval import model_forecasts
from rnnkit.train.options import TrainConfig

TRAIN = TrainConfig(epochs=2, batch_size=8, progress=False, tensorboard=False, seed=0)
CHANGED = 72  # the copy's values differ from this row on: inside the test part (rows 70 to 79)


def prepared_of(frame, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return forecast.prepare(config(path))


def test_no_refitted_forecast_reads_data_after_its_origin(tmp_path):
    original = table()
    changed = original.copy()
    changed.loc[CHANGED:, "value"] += 50.0  # a level shift after row 72: only later origins may see it
    one, two = prepared_of(original, tmp_path, "one"), prepared_of(changed, tmp_path, "two")
    model = model_for(config(tmp_path / "one.csv"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    refit = {
        name: refit_forecasts(model, p, TRAIN, every=2, epochs=2) for name, p in (("one", one), ("two", two))
    }
    for key, value in model.state_dict().items():  # the trained model is left as it was
        assert torch.equal(value, initial[key])

    origin = one.test_windows.origin
    before = origin < CHANGED
    assert before.any() and (~before).any()
    np.testing.assert_array_equal(refit["one"]["point"][before], refit["two"]["point"][before])
    assert not np.allclose(refit["one"]["point"][~before], refit["two"]["point"][~before])

    # the first block is the trained model's; the later ones were retrained and differ from it
    plain = model_forecasts(model, one.test_windows, one.preprocessing)["point"]
    first = np.argsort(origin)[:2]
    np.testing.assert_array_equal(refit["one"]["point"][first], plain[first])
    assert not np.allclose(refit["one"]["point"], plain)


def test_refit_every_covers_the_whole_test_part_and_says_so_in_the_table(tmp_path):
    path = tmp_path / "series.csv"
    table().to_csv(path, index=False)
    run = {
        "task": "forecast",
        "out_dir": str(tmp_path / "run"),
        "data": {**config(path).model_dump(), "classical": []},
        "model": {"hidden_size": 8},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "tensorboard": False},
        "evaluate": {"refit_every": 3, "refit_epochs": 1},
    }
    (tmp_path / "run.yaml").write_text(json.dumps(run))
    said = []
    metrics = train_run(load_run_config(tmp_path / "run.yaml"), log=said.append)
    assert metrics["refit"] == {"every": 3, "epochs": 1}
    assert "refitting every 3 forecast origins (1 epoch each, warm-started)" in said
    assert "the model retrained, warm-started, every 3 origins" in "\n".join(said)
    assert np.isfinite(metrics["value"]["all"]["model"]["MASE"])


def test_refit_every_is_refused_for_other_tasks(tmp_path):
    (tmp_path / "texts.csv").write_text("text,label\na good film,pos\na bad film,neg\n")
    run = {"task": "classify", "data": {"path": "texts.csv"}, "evaluate": {"refit_every": 5}}
    (tmp_path / "run.yaml").write_text(json.dumps(run))
    with pytest.raises(
        ConfigError, match=r"evaluate.refit_every refits forecasters only: drop it for classify"
    ):
        load_run_config(tmp_path / "run.yaml")
