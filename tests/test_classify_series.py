"""The classify_series task end to end on generated recordings: official train and test files, a
stratified validation share of the training part, per-channel standardisation fitted on training
steps only, and the table beside the majority class, 1-NN Euclidean and 1-NN DTW."""

import numpy as np
import pytest
from helpers import write_run_config

from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.files import CACHE_VARIABLE
from rnnkit.run import train_run
from rnnkit.tasks import classify_series


def write_ts(path, n: int, seed: int) -> None:
    """Two classes of 2-channel recordings of 12 to 20 steps: a rising or a falling first channel."""
    rng = np.random.default_rng(seed)
    lines = [
        "@problemName Toy",
        "@timeStamps false",
        "@univariate false",
        "@classLabel true up down",
        "@data",
    ]
    for i in range(n):
        label = "up" if i % 2 == 0 else "down"
        t = np.linspace(0, 1, rng.integers(12, 21))
        first = (t if label == "up" else 1 - t) * 5 + 100 + rng.normal(0, 0.2, len(t))  # far from 0: scaled
        second = rng.normal(0, 1, len(t))
        channels = [",".join(f"{v:.4f}" for v in c) for c in (first, second)]
        lines.append(":".join([*channels, label]))
    path.write_text("\n".join(lines) + "\n")


def run_config(tmp_path, **data):
    write_ts(tmp_path / "toy_TRAIN.ts", 24, 0)
    write_ts(tmp_path / "toy_TEST.ts", 10, 1)
    data = {"path": "toy_TRAIN.ts", "test_path": "toy_TEST.ts", "validation": 0.25, **data}
    model = {"hidden_size": 8, "conv_channels": [4], "chunk_size": 5, "pooling": "mean"}
    return write_run_config(
        tmp_path,
        "classify_series",
        data,
        model,
        {"epochs": 30, "batch_size": 6, "optimizer": {"lr": 0.01}, "seed": 0},
    )


def test_recordings_train_and_score_beside_the_nearest_neighbours(tmp_path):
    config = run_config(tmp_path)
    prepared = classify_series.prepare(config.data)
    assert (len(prepared.train), len(prepared.validation), len(prepared.test)) == (18, 6, 10)
    steps = np.concatenate([s for s in prepared.recordings["train"].sequences])
    np.testing.assert_allclose(steps.mean(0), 0, atol=1e-5)  # standardised on the training steps
    said = []
    metrics = train_run(config, log=said.append)
    table = "\n".join(said)
    for row in ("model", "majority class", "1-NN Euclidean", "1-NN DTW (full window)"):
        assert row in table
    assert metrics["1nn_euclidean"]["accuracy"] == 1.0 and metrics["model"]["accuracy"] >= 0.8
    assert metrics["majority"]["accuracy"] == 0.5
    assert (tmp_path / "run" / "confusion_matrix.png").is_file()


def test_euclidean_neighbours_resample_other_lengths_and_dtw_aligns_them():
    a = np.arange(4.0)[:, None]  # (4, 1)
    b = np.arange(0.0, 3.5, 0.5)[:, None]  # the same ramp over 7 steps
    distances = classify_series.euclidean_distances([a, -a], [b])
    assert distances[0, 0] == pytest.approx(0.0) and distances[1, 0] > 1
    assert classify_series.dtw_distances([a, -a], [b]).argmin(0).tolist() == [0]


def test_an_archive_is_read_from_sktimes_wheel_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    with pytest.raises(
        DataError,
        match=r"data.archive BasicMotions reads sktime-1.2.0-py3-none-any.whl, which is not in .*sensors",
    ):
        classify_series.archive_files("BasicMotions")
    with pytest.raises(ConfigError, match=r"give path .* or archive, one of them"):
        run_config(tmp_path, archive="BasicMotions")


def ramp(n: int, up: bool) -> np.ndarray:
    """A recording of the toy set's kind: the first channel rising (or falling) by 5 around 100."""
    t = np.linspace(0, 1, n) if up else np.linspace(1, 0, n)
    return np.stack([t * 5 + 100, np.zeros(n)], 1)


def test_a_trained_bundle_labels_arrays_and_unlabelled_files(tmp_path, capsys):
    import rnnkit
    from rnnkit.cli.main import main

    train_run(run_config(tmp_path), log=lambda _: None)
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    assert "predict" in predictor.verbs
    rising, falling = ramp(15, True), ramp(15, False)
    one = predictor.predict(rising)
    assert one["label"] == "up" and set(one["probabilities"]) == {"down", "up"}
    assert [r["label"] for r in predictor.predict([falling, ramp(12, True)])] == ["down", "up"]

    unlabelled = tmp_path / "new.ts"
    rows = [",".join(f"{v:.3f}" for v in r.T[0]) + ":" + ",".join("0" for _ in r) for r in (falling, rising)]
    unlabelled.write_text("@problemName New\n@classLabel false\n@data\n" + "\n".join(rows) + "\n")
    assert [r["label"] for r in predictor.predict(unlabelled)] == ["down", "up"]
    main(["predict", str(tmp_path / "run" / "bundle"), str(unlabelled)])
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["down", "up"]
    with pytest.raises(ShapeError, match=r"recording 0 has shape \(15, 3\); this model reads \(T >= 1, 2\)"):
        predictor.predict(np.zeros((15, 3)))


def test_a_live_recording_read_as_it_arrives_is_labelled_as_the_whole_one(tmp_path):
    import rnnkit

    config = run_config(tmp_path)
    model = {"hidden_size": 8, "pooling": "mean"}  # forward only, no front end, no chunks: it can read on
    train = {"epochs": 20, "batch_size": 6, "optimizer": {"lr": 0.01}}
    live_config = write_run_config(tmp_path, "classify_series", config.data.model_dump(), model, train)
    train_run(live_config, log=lambda _: None)
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    recording = ramp(15, True)
    session = predictor.session()
    session.feed(recording[:6])
    live = session.feed(recording[6:])
    whole = predictor.predict(recording)
    assert live["label"] == whole["label"] and live["steps_read"] == 15
    for name, p in whole["probabilities"].items():
        assert live["probabilities"][name] == pytest.approx(p, abs=1e-5)
    with pytest.raises(ShapeError, match=r"recording 0 has shape \(4, 3\)"):
        session.feed(np.zeros((4, 3)))
