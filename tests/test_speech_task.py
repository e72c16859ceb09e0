"""The speech task end to end on generated 'recordings' (each label a distinct pattern of frames):
isolated and connected utterances from a split by recording, CTC training, label and utterance
error rates by greedy and beam decoding beside 1-NN DTW, and ``transcribe``."""

import numpy as np
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.run import train_run
from rnnkit.tasks import speech


def recording(label: int, rng, frames: int | None = None) -> np.ndarray:
    """A few frames of 4 features: feature ``label`` high, the rest noise."""
    frames = frames or int(rng.integers(4, 8))
    x = rng.normal(0, 0.3, (frames, 4))
    x[:, label] += 2.0
    return x.astype(np.float32)


def write_npz(tmp_path, n: int = 120):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    sequences = [recording(int(y), rng) for y in labels]
    np.savez(
        tmp_path / "digits.npz",
        values=np.concatenate(sequences),
        lengths=np.array([len(s) for s in sequences]),
        labels=np.array([str(y) for y in labels]),
    )


def run(tmp_path, **data):
    write_npz(tmp_path)
    data = {"path": "digits.npz", "test": 0.25, "validation": 0.1, **data}
    train = {"epochs": 60, "batch_size": 8, "optimizer": {"lr": 0.01}}
    return write_run_config(tmp_path, "speech", data, {"hidden_size": 16}, train)


def test_connected_utterances_join_each_parts_own_recordings_once(tmp_path):
    config = run(tmp_path, connected=True, min_labels=2, max_labels=4)
    prepared = speech.prepare(config.data)
    isolated = speech.prepare(run(tmp_path).data)
    for name in ("train", "validation", "test"):
        joined, alone = getattr(prepared, name), getattr(isolated, name)
        assert joined.lengths.sum() == alone.lengths.sum()  # every recording of the part, once
        assert sum(len(x) for x in joined.labels) == len(alone)
        assert all(2 <= len(x) <= 4 for x in joined.labels[:-1])  # the last run may be shorter
    assert len(prepared.references) == len(prepared.test) and len(prepared.references[0]) >= 2


@pytest.mark.parametrize("connected", [False, True])
def test_recordings_are_transcribed_and_scored_beside_the_nearest_neighbour(tmp_path, connected):
    said = []
    metrics = train_run(run(tmp_path, connected=connected), log=said.append)
    table = "\n".join(said)
    assert "model, greedy" in table and "model, beam 8" in table
    assert metrics["greedy"]["label_error_rate"] < 0.2
    assert (tmp_path / "run" / "ctc_posteriors.png").is_file()
    if connected:
        assert "1-NN DTW skipped" in table
    else:
        assert metrics["1-NN DTW"]["utterance_error_rate"] < 0.2

    recogniser = rnnkit.load(tmp_path / "run" / "bundle")
    rng = np.random.default_rng(5)
    spoken = np.concatenate([recording(2, rng, 6), recording(0, rng, 6)])
    assert recogniser.transcribe(spoken if connected else recording(1, rng, 6)) == (
        "2 0" if connected else "1"
    )
    assert recogniser.transcribe([recording(0, rng, 6)], beam_width=4) == ["0"]
    with pytest.raises(ShapeError, match=r"utterance 0 has shape \(6, 3\); this model reads \(T >= 1, 4\)"):
        recogniser.transcribe(np.zeros((6, 3)))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": "fsdd"}, "give path or dataset, one of them"),
        ({"min_labels": 5, "max_labels": 2}, "is above"),
    ],
)
def test_a_config_that_cannot_work_is_refused(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, **data)


def test_a_unidirectional_model_transcribes_frames_as_they_arrive(tmp_path):
    config = run(tmp_path, connected=True)
    model = {"hidden_size": 16, "bidirectional": False}
    data = config.data.model_dump()
    train = {"epochs": 60, "batch_size": 8, "optimizer": {"lr": 0.01}}
    train_run(write_run_config(tmp_path, "speech", data, model, train), log=lambda _: None)
    recogniser = rnnkit.load(tmp_path / "run" / "bundle")
    rng = np.random.default_rng(5)
    spoken = np.concatenate([recording(2, rng, 6), recording(0, rng, 6), recording(1, rng, 6)])
    session = recogniser.session()
    for start in range(0, len(spoken), 5):  # five frames at a time
        live = session.feed(spoken[start : start + 5])
    assert live["frames_read"] == len(spoken)
    assert live["transcript"] == recogniser.transcribe(spoken)  # greedy, read whole
    with pytest.raises(ShapeError, match=r"frames have shape \(3, 2\)"):
        session.feed(np.zeros((3, 2)))


def test_a_bidirectional_model_says_why_it_cannot_follow_frames_live(tmp_path):
    from rnnkit.models import build_model

    model = build_model({"name": "ctc", "input_size": 4, "num_labels": 3, "hidden_size": 4})
    with pytest.raises(ConfigError, match="bidirectional: it reads each utterance from its end too"):
        model.read_on(torch.zeros(1, 2, 4))
