"""Two CPU processes under torchrun (gloo) train as one process with the same global batch does.

train.batch_size is global: 2 processes with 8 rows each take the optimiser steps one process takes
with 16, so the loss curve and the final weights agree up to float rounding. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from rnnkit.tasks import forecast

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# 110 points split by rows: the last 20 are the test part, the 16 before them the validation part,
# 74 train. Windows of 10 + 1: 74 - 10 = 64 training windows = 4 global batches of 16 per epoch
# (8 per process), with nothing left over; 16 validation and 20 test windows.
CONFIG = {
    "task": "forecast",
    "data": {
        "synthetic": "sine",
        "synthetic_options": {"points": 110, "noise": 0.1, "seed": 0},
        "lookback": 10,
        "horizon": 1,
        "test": 20,
        "validation": 16,
    },
    "model": {"cell": "gru", "hidden_size": 8},
    "train": {
        "epochs": 3,
        "batch_size": 16,
        "shuffle": True,
        "optimizer": {"name": "adam", "lr": 0.01},
        "seed": 1,
        "progress": False,
        "tensorboard": False,
    },
}
STEPS = [4, 8, 12]
TRAIN_WINDOWS, VALIDATION_WINDOWS = 64, 16

# Imported by every Python process that has this directory on PYTHONPATH: in torchrun's workers
# (RANK set) it records each write under the run directory to writes-<rank>.txt.
AUDIT = """
import os, sys
if "RANK" in os.environ and "AUDIT_RUN_DIR" in os.environ:
    _run_dir = os.environ["AUDIT_RUN_DIR"]
    _report = open(os.path.join(os.environ["AUDIT_REPORT_DIR"], f"writes-{os.environ['RANK']}.txt"), "w")
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE)
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"):
            path, writes = args[0], True
        else:
            return
        if writes and isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if os.path.abspath(path).startswith(_run_dir):
                _report.write(f"{event} {path}\\n")
                _report.flush()

    sys.addaudithook(_hook)
"""


def read_log(run: Path) -> dict[str, list[float]]:
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in ("step", "train_loss", "val_loss")}


class Runs:
    """The outputs of one torchrun (2 processes) run and one single-process run of the same config."""

    def __init__(self, root: Path) -> None:
        self.root, self.ddp, self.one = root, root / "ddp", root / "one"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    runs = Runs(tmp_path_factory.mktemp("distributed"))
    config = runs.root / "ddp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    hooks = runs.root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    audited = {
        **ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), ENV.get("PYTHONPATH")])),
        "AUDIT_RUN_DIR": str(runs.ddp),
        "AUDIT_REPORT_DIR": str(runs.root),
    }
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.Popen(  # both runs at once: each is mostly start-up
        [*torchrun, "-m", "rnnkit", "train", str(config), f"out_dir={runs.ddp}"],
        cwd=runs.root,
        env=audited,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    single = subprocess.run(
        [sys.executable, "-m", "rnnkit", "train", str(config), f"out_dir={runs.one}"],
        cwd=runs.root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    runs.out, runs.err = two.communicate(timeout=120)
    assert two.returncode == 0, f"torchrun failed:\n{runs.out}\n{runs.err}"
    assert single.returncode == 0, single.stderr
    return runs


def test_the_split_gives_whole_global_batches():
    """The premise of the comparison: every optimiser step sees a full global batch of 16."""
    prepared = forecast.prepare(forecast.SeriesDataConfig(**CONFIG["data"]))
    assert (len(prepared.train), len(prepared.validation)) == (TRAIN_WINDOWS, VALIDATION_WINDOWS)
    assert TRAIN_WINDOWS % CONFIG["train"]["batch_size"] == 0
    assert STEPS[0] == TRAIN_WINDOWS // CONFIG["train"]["batch_size"]


def test_output_is_printed_once(runs):
    assert runs.out.count("test part: 20 forecast origins, horizon 1") == 1, runs.out
    assert runs.out.count(f"wrote {runs.ddp}/") == 1, runs.out
    assert "model" in runs.out and "last value" in runs.out
    assert "rnnkit: error" not in runs.err


def test_only_rank_0_writes_files(runs):
    rank0 = (runs.root / "writes-0.txt").read_text()
    assert "config.yaml" in rank0 and "log.csv" in rank0 and "last.pt" in rank0  # the audit sees writes
    assert (runs.root / "writes-1.txt").read_text() == ""
    assert sorted(p.name for p in runs.ddp.iterdir()) == sorted(p.name for p in runs.one.iterdir())
    assert sorted(p.name for p in (runs.ddp / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(list(runs.ddp.rglob("log.csv"))) == 1
    assert sorted(p.name for p in (runs.ddp / "bundle").iterdir()) == sorted(
        p.name for p in (runs.one / "bundle").iterdir()
    )


def test_validation_curve_and_weights_match_one_process(runs):
    two, one = read_log(runs.ddp), read_log(runs.one)
    assert two["step"] == one["step"] == STEPS
    torch.testing.assert_close(
        torch.tensor(two["val_loss"]), torch.tensor(one["val_loss"]), rtol=1e-4, atol=0
    )
    got = safetensors.torch.load_file(runs.ddp / "bundle" / "model.safetensors")
    expected = safetensors.torch.load_file(runs.one / "bundle" / "model.safetensors")
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_logged_training_loss_is_the_global_batch_loss(runs):
    """log.csv's train_loss must be the loss of the whole global batch, not rank 0's half of it."""
    two, one = read_log(runs.ddp), read_log(runs.one)
    torch.testing.assert_close(
        torch.tensor(two["train_loss"]), torch.tensor(one["train_loss"]), rtol=1e-4, atol=0
    )


def test_a_stopped_two_process_run_resumes_exactly(tmp_path):
    """Each process's RNG (dropout) travels to rank 0's checkpoint and back to its own process."""
    config = {**CONFIG, "model": {"cell": "lstm", "hidden_size": 8, "num_layers": 2, "dropout": 0.3}}
    path = tmp_path / "dropout.yaml"
    path.write_text(yaml.safe_dump(config))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    train = [*torchrun, "-m", "rnnkit", "train", str(path)]
    runs = [
        subprocess.Popen(
            [*train, f"out_dir={tmp_path / 'whole'}"],
            cwd=tmp_path,
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ),
        subprocess.Popen(
            [*train, f"out_dir={tmp_path / 'cut'}", "train.max_steps=6"],
            cwd=tmp_path,
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ),
    ]
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, f"{out}\n{err}"
    cut = tmp_path / "cut"
    assert torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["position"]["step"] == 6
    resolved = yaml.safe_load((cut / "config.yaml").read_text())
    resolved["train"]["max_steps"] = None  # go on to the end of the epochs, like the whole run
    (cut / "config.yaml").write_text(yaml.safe_dump(resolved))
    resumed = subprocess.run(
        [*torchrun, "-m", "rnnkit", "resume", str(cut)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    got = safetensors.torch.load_file(cut / "bundle" / "model.safetensors")
    expected = safetensors.torch.load_file(tmp_path / "whole" / "bundle" / "model.safetensors")
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert read_log(cut) == read_log(tmp_path / "whole")


def test_two_nodes_on_one_machine_train_as_one_process(runs):
    """Two torchrun agents as two nodes (--nnodes 2, one process each, rendezvous over TCP on the
    loopback): the run of one process with the same global batch."""
    import socket

    with socket.socket() as s:  # a free loopback port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = runs.root / "two_nodes"
    agent = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=rnnkit-two-nodes",
        "-m", "rnnkit", "train", str(runs.root / "ddp.yaml"), f"out_dir={out}",
    ]  # fmt: skip
    nodes = [
        subprocess.Popen(
            agent, cwd=runs.root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for node in nodes:
        stdout, stderr = node.communicate(timeout=180)
        assert node.returncode == 0, f"a torchrun node failed:\n{stdout}\n{stderr}"
    assert read_log(out)["step"] == STEPS
    got = safetensors.torch.load_file(out / "bundle" / "model.safetensors")
    expected = safetensors.torch.load_file(runs.one / "bundle" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
