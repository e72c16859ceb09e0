"""The anomaly task end to end on a generated signal with one injected anomaly in its test part:
scores from an autoencoder or a forecaster, the threshold fitted on the clean validation part, the
table beside the z-score and IsolationForest baselines, the plot, and ``detect`` on new data."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import write_run_config

import rnnkit
from rnnkit.anomaly import smooth
from rnnkit.errors import ConfigError, DataError
from rnnkit.run import load_run_config, train_run

N, START, END = 1200, 1000, 1030  # the anomaly: steps 1000-1029, in the test part (from step 840)


def signal(tmp_path, anomaly: bool = True):
    rng = np.random.default_rng(0)
    t = np.arange(N)
    value = np.sin(2 * np.pi * t / 40) + rng.normal(0, 0.05, N)
    label = np.zeros(N, dtype=int)
    if anomaly:
        value[START:END] = 2.5 + rng.normal(0, 0.05, END - START)  # the wave stops at a high level
        label[START:END] = 1
    path = tmp_path / "signal.csv"
    pd.DataFrame({"value": value, "label": label}).to_csv(path, index=False)
    return path


def run(tmp_path, score: str = "reconstruction", **data):
    signal(tmp_path)
    model = {"name": "autoencoder", "hidden_size": 16, "latent_size": 8}
    if score == "forecast":
        model = {"name": "forecaster", "hidden_size": 16}
    data = {"path": "signal.csv", "columns": ["value"], "window": 20, "score": score, "train": 0.5, **data}
    train = {"epochs": 8, "batch_size": 32, "optimizer": {"lr": 0.01}}
    return write_run_config(tmp_path, "anomaly", data, model, train)


@pytest.mark.parametrize("score", ["reconstruction", "forecast"])
def test_an_injected_anomaly_is_found_and_the_table_sets_it_beside_the_baselines(tmp_path, score):
    said = []
    metrics = train_run(run(tmp_path, score), log=said.append)
    table = "\n".join(said)
    for row in ("model", "z-score", "IsolationForest (lagged windows)", "adj. F1: point-adjusted"):
        assert row in table
    assert metrics["events"] == 1 and metrics["model"]["event"]["recall"] == 1.0
    assert metrics["model"]["point"]["precision"] > 0.5
    assert (tmp_path / "run" / "anomalies.png").is_file()

    detector = rnnkit.load(tmp_path / "run" / "bundle")
    frame = detector.detect(signal(tmp_path))
    assert list(frame.columns) == ["value", "label", "score", "flag"]
    assert np.isnan(frame["score"][0]) == (score == "forecast")  # a forecast needs a window before it
    assert frame["flag"][START:END].mean() > 0.5 and frame["flag"][: START - 100].mean() < 0.02
    assert any(START <= e["start"] < END for e in detector.predict(str(signal(tmp_path))))


def test_smoothed_scores_are_kept_in_the_bundle_and_detect_smooths_alike(tmp_path):
    metrics = train_run(run(tmp_path, smooth=15), log=lambda line: None)
    assert metrics["decision"]["smooth"] == 15 and metrics["model"]["event"]["recall"] == 1.0
    frame = rnnkit.load(tmp_path / "run" / "bundle").detect(signal(tmp_path))
    raw = rnnkit.load(tmp_path / "run" / "bundle")
    raw.preprocessing["decision"]["smooth"] = 0
    unsmoothed = raw.detect(signal(tmp_path))["score"].to_numpy()  # in IQRs: a linear map of the raw
    np.testing.assert_allclose(frame["score"].to_numpy(), smooth(unsmoothed, 15), rtol=1e-6, atol=1e-6)
    assert frame["flag"][START:END].mean() > 0.5 and frame["flag"][: START - 100].mean() < 0.02


def test_thresholds_by_best_f1_need_labels_in_the_validation_part(tmp_path):
    with pytest.raises(
        DataError, match=r"best_f1 needs labelled anomalies in the validation part \(rows 600 to 839\)"
    ):
        train_run(run(tmp_path, threshold="best_f1"), log=lambda _: None)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"columns": []}, "name the signal's channels in columns"),
        ({"train": 0.8, "validation": 0.3}, "leave no test part"),
        ({"dataset": "mitdb"}, "give path or dataset, one of them"),
    ],
)
def test_a_config_that_cannot_work_is_refused(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, **data)


def test_the_score_picks_the_model_and_a_model_that_does_not_fit_is_named(tmp_path):
    from rnnkit.run import resolve_model

    config = run(tmp_path)
    config.data.score = "forecast"
    with pytest.raises(
        ConfigError, match=r"model\.name is fixed by the data section to forecaster, got autoencoder"
    ):
        resolve_model(config)
    (tmp_path / "plain.yaml").write_text(
        json.dumps(
            {"task": "anomaly", "data": {"path": "signal.csv", "columns": ["value"], "score": "forecast"}}
        )
    )
    assert load_run_config(tmp_path / "plain.yaml").model["name"] == "forecaster"
