"""A run killed with SIGKILL resumes to the very weights of an uninterrupted run; torn writes never win.

The model has dropout between layers and recurrent dropout, and the data is shuffled, so the resumed
run repeats the uninterrupted one only if the RNG states and the data position come back exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from rnnkit.tasks import forecast
from rnnkit.train import checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# 400 points: the last 80 rows are the test part, the 40 before them the validation part, 280 train.
# Windows of 10 + 1: 270 training windows -> 68 steps of 4 per epoch (the last one of 2 rows).
TRAIN_WINDOWS, STEPS_PER_EPOCH, EPOCHS = 270, 68, 2
TOTAL = STEPS_PER_EPOCH * EPOCHS
KILL_AFTER = STEPS_PER_EPOCH + 10  # inside the second epoch, after an epoch end

CONFIG = {
    "task": "forecast",
    "data": {
        "synthetic": "sine",
        "synthetic_options": {"points": 400, "noise": 0.1, "seed": 0},
        "lookback": 10,
        "horizon": 1,
        "test": 0.2,
        "validation": 0.1,
    },
    "model": {"cell": "lstm", "hidden_size": 8, "num_layers": 2, "dropout": 0.3, "recurrent_dropout": 0.2},
    "train": {
        "epochs": EPOCHS,
        "batch_size": 4,
        "shuffle": True,
        "checkpoint_every": 1,
        "optimizer": {"name": "adam", "lr": 0.01},
        "seed": 3,
        "progress": False,
        "tensorboard": False,
    },
}


def rnnkit(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


def saved_step(path: Path) -> int | None:
    """The step of the checkpoint at ``path``, or None while there is none."""
    try:
        return checkpoint.load(path)["position"]["step"]
    except FileNotFoundError:
        return None


def weights(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(run / "bundle" / "model.safetensors")


def test_the_step_counts_follow_from_the_split():
    prepared = forecast.prepare(forecast.SeriesDataConfig(**CONFIG["data"]))
    assert len(prepared.train) == TRAIN_WINDOWS
    batches = -(-TRAIN_WINDOWS // CONFIG["train"]["batch_size"])  # the last batch may be short
    assert batches == STEPS_PER_EPOCH


def test_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path):
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = rnnkit("train", str(config), f"out_dir={whole}", cwd=tmp_path)  # runs alongside
    victim = rnnkit("train", str(config), f"out_dir={killed}", cwd=tmp_path)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 90
    while (saved_step(last) or 0) < KILL_AFTER:
        assert victim.poll() is None, f"the run ended before it could be killed: {victim.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint of the second epoch within 90 s"
        time.sleep(0.02)
    victim.kill()
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    step = saved_step(last)
    assert KILL_AFTER <= step < TOTAL, f"killed at step {step} of {TOTAL}: not mid-run"
    assert not (killed / "bundle").exists()

    resumed = finish(rnnkit("resume", str(killed), cwd=tmp_path))
    finish(reference)
    assert "test part: 80 forecast origins, horizon 1" in resumed, resumed
    assert "model" in resumed and "last value (persistence)" in resumed

    assert saved_step(whole / "checkpoints" / "last.pt") == saved_step(last) == TOTAL
    expected, got = weights(whole), weights(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming"
    assert (killed / "log.csv").read_text() == (whole / "log.csv").read_text()
    assert (killed / "bundle" / "metrics.json").read_text() == (whole / "bundle" / "metrics.json").read_text()


TORN_WRITER = """
import sys, time
import torch
from rnnkit.train import checkpoint

path = sys.argv[1]
checkpoint.atomic_save({"step": 1, "weights": torch.arange(6.0)}, path)

class Torn:  # a file that takes half of what is written to it, then hangs until killed
    def __init__(self, *args):
        self.file = open(*args)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.file.close()
    def write(self, data):
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        print("half written", flush=True)
        time.sleep(120)

checkpoint.open = Torn  # the module's open: the checkpoint's bytes go to a torn file
checkpoint.atomic_save({"step": 2, "weights": torch.zeros(100_000)}, path)
"""


def test_checkpoint_write_killed_midway_leaves_the_last_good_one(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", TORN_WRITER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "half written\n"
        torn = [p for p in path.parent.iterdir() if p != path]
        assert len(torn) == 1 and torn[0].stat().st_size > 0  # the new checkpoint, half on disk
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    saved = checkpoint.load(path)
    assert saved["step"] == 1
    assert torch.equal(saved["weights"], torch.arange(6.0))
    with pytest.raises(Exception):  # noqa: B017 - torch raises a RuntimeError or an UnpicklingError
        checkpoint.load(torn[0])


def test_checkpoint_write_failing_midway_keeps_the_old_one_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.atomic_save({"step": 1, "weights": torch.arange(6.0)}, path)

    def failing_fsync(fd):  # the temporary file holds the new checkpoint, not yet on disk
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_save({"step": 2, "weights": torch.zeros(6)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left
    saved = checkpoint.load(path)
    assert saved["step"] == 1 and torch.equal(saved["weights"], torch.arange(6.0))
