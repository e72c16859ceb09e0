"""The Trainer's cost over a raw PyTorch loop, and the main job's wall time over ``import torch``.

Part 1, per optimiser step, in one process: the main job's model and batches (configs/seattle_weather.yaml:
an LSTM of 32 with a Gaussian head, batches of 32 windows of 14 days) trained for the same 476 steps
(early stopping off) from the same initial weights, in interleaved rounds, by

    raw loop          a DataLoader over the same shuffled order, forward, backward, clip_grad_norm_,
                      Adam, zero_grad; the validation loss at each epoch's end
    Trainer           rnnkit's Trainer as the main job runs it: the same, plus its NaN guard, the LR
                      schedule, the progress bar (drawn to nowhere here), log.csv, TensorBoard where
                      installed, best.pt at each new best and last.pt at each epoch's end (both
                      atomic and fsync'd), early-stopping bookkeeping, loss.png drawn at the end
      no TensorBoard  what an install without the tensorboard extra runs
      nor loss.png    the loop with evaluation and checkpointing at the config's cadence: the
                      issue's measure (target <= 1.3x the raw loop)

The ratio printed is the median over rounds of each round's ratio, so drift between rounds cancels.

Part 2, fresh processes, interleaved: ``python -c "import torch"``; ``import torch, torch._dynamo``
(every torch.optim optimiser imports dynamo when it is built); the imports the main job cannot do
without (those two, pandas, pydantic, statsmodels, pyplot); ``rnnkit train configs/seattle_weather.yaml``
with and without the classical baselines (``data.classical=[]``). Median wall seconds and the ratio
to ``import torch`` (the issue's target for the main job: <= 2.5).

    python benchmarks/trainer.py [--rounds 7] [--job-rounds 3] [--profile]

``--profile`` prints the Trainer's top functions under cProfile (after a warm-up run) instead.

Where the main job's time went (2 vCPUs, warm .pyc files; cProfile and a wall-clock timeline), and
what was done:

- The classical baselines took 9.9 s: one statsmodels ``append`` per origin (359 origins, three
  models), each filtering and smoothing the whole series again, plus a parameter covariance by
  numerical derivatives for each of the ARIMA search's 16 fits. Now one filter pass gives every
  origin's state and the forecasts are those states carried through the model's matrices (equal to
  the appends, tested), and search fits skip the covariance and the smoother: 3.4 s, of which
  importing statsmodels is 0.8 s and the 16 ARIMA fits 2.0 s.
- Checkpoints: 18 last.pt and about 10 best.pt a run, each fsync'd (2 to 14 ms each on this disk).
  The write, fsync and rename now happen in a background thread (checkpoint.Writer); the trainer
  only takes the snapshot (about 1 ms). The progress bar formats its figures at most every 0.1 s
  and TensorBoard flushes every 10 s instead of at each evaluation.
- What is left is floor: import torch 1.2-2.1 s; torch._dynamo 1.1-1.6 s, imported by
  ``torch.optim.Optimizer.__init__`` itself (any training script pays it); pandas and pydantic
  0.4 s; the 476 steps at the raw loop's speed about 1 s; matplotlib 0.5 s and three plots 0.6 s.
  The imports alone are 2.7-3.3x ``import torch`` and the raw training adds about 0.5x, so the
  target of 2.5x is below what any script that trains this model with torch.optim and writes
  these tables and plots can reach. A target that measures rnnkit's own cost: the main job within
  1.3x of its imports + the raw loop's training + the ARIMA search (measured 11.1 s against
  5.7 + 0.9 + 2.3 = 8.9 s, 1.25x).
- The Trainer's remaining cost over the raw loop is fixed per run, not per step: loss.png (0.15 s
  warm, 0.3 s as the process's first figure) and TensorBoard's event writer; without them the
  loop with its evaluation and checkpoints is 1.14-1.27x the raw loop.

Measured (one run, 2 vCPUs, noisy: rounds vary by 20%):

    raw loop 1.88 ms/step; Trainer 1.40x; no TensorBoard 1.60x; nor loss.png 1.26x (target met)
    import torch 2.12 s; + dynamo 1.64x; the job's imports 2.68x; main job 11.14 s = 5.24x;
    main job without the classical rows 7.94 s = 3.74x
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import setting
from torch.utils.data import DataLoader

from rnnkit.models import build_model
from rnnkit.run import load_run_config, resolve_model
from rnnkit.tasks import get_task
from rnnkit.train import Trainer, epoch_order
from rnnkit.train.callbacks import LossCurve, default_callbacks

ROOT = Path(__file__).resolve().parent.parent
# what the main job cannot do without: torch and torch.optim's dynamo, pandas for the table,
# statsmodels for the classical rows, pyplot for the plots, pydantic for the config
TARGETED = "  nor loss.png"  # the measure: the loop with evaluation and checkpoints, no plot
FLOOR = "import torch, torch._dynamo, pandas, pydantic, statsmodels.tsa.arima.model, matplotlib.pyplot"
CONFIG = ROOT / "configs" / "seattle_weather.yaml"


def prepare(epochs: int):
    config = load_run_config(CONFIG)
    train = config.train.model_copy(
        update={
            "epochs": epochs,
            "early_stopping": config.train.early_stopping.model_copy(update={"patience": None}),
        }
    )
    config = config.model_copy(update={"train": train})
    prepared = get_task(config.task).prepare(config.data, batch_size=train.batch_size)
    torch.manual_seed(0)
    model = build_model(resolve_model(config, prepared))
    return config, prepared, model


def raw_loop(model, prepared, train_config) -> int:
    """The hand-written loop; returns the number of optimiser steps."""
    c = train_config
    optimizer = torch.optim.Adam(model.parameters(), lr=c.optimizer.lr)
    steps = 0
    for epoch in range(c.epochs):
        model.train()
        order = epoch_order(len(prepared.train), True, c.seed, epoch, 0, 1)
        loader = DataLoader(
            prepared.train, batch_size=c.batch_size, sampler=order, collate_fn=prepared.collate
        )
        for batch in loader:
            loss, _ = model.loss(batch.inputs, batch.targets, lengths=batch.lengths)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
        model.eval()
        with torch.no_grad():
            val = DataLoader(prepared.validation, batch_size=c.batch_size, collate_fn=prepared.collate)
            sum(model.loss(b.inputs, b.targets, lengths=b.lengths)[0].item() for b in val)
    return steps


def trainer_fit(model, prepared, train_config, run_dir: Path, plot: bool = True) -> int:
    callbacks = default_callbacks(run_dir, train_config.progress, train_config.tensorboard)
    if not plot:
        callbacks = [c for c in callbacks if not isinstance(c, LossCurve)]
    trainer = Trainer(model, train_config, run_dir, callbacks=callbacks, collate=prepared.collate)
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar draws, unseen
        trainer.fit(prepared.train, prepared.validation)
    return trainer.step


def per_step(rounds: int, epochs: int, profile: bool) -> None:
    config, prepared, model = prepare(epochs)
    initial = copy.deepcopy(model.state_dict())
    steps = {}
    with tempfile.TemporaryDirectory(prefix="rnnkit-trainer-") as tmp:
        folder = lambda: Path(tmp) / f"run{time.monotonic_ns()}"  # noqa: E731
        plain = config.train.model_copy(update={"tensorboard": False})
        runs = {
            "raw loop": lambda m: raw_loop(m, prepared, config.train),
            "Trainer": lambda m: trainer_fit(m, prepared, config.train, folder()),
            "  no TensorBoard": lambda m: trainer_fit(m, prepared, plain, folder()),
            "  nor loss.png": lambda m: trainer_fit(m, prepared, plain, folder(), plot=False),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        if profile:  # one run to warm up (imports, the allocator), then one under the profiler
            model.load_state_dict(initial)
            runs["Trainer"](model)
            model.load_state_dict(initial)
            profiler = cProfile.Profile()
            profiler.runcall(runs["Trainer"], model)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
            return
        for round_ in range(rounds + 1):  # the first round warms up
            for name, run in runs.items():
                model.load_state_dict(initial)
                start = time.perf_counter()
                steps[name] = run(model)
                if round_:
                    times[name].append((time.perf_counter() - start) / steps[name])
    raw = statistics.median(times["raw loop"])
    print(f"\nper optimiser step, {steps['Trainer']} steps a run, {rounds} interleaved rounds:")
    print(f"  {'raw loop':<22} {raw * 1e3:6.2f} ms (median)")
    for name in list(runs)[1:]:
        ratios = [t / r for t, r in zip(times[name], times["raw loop"], strict=True)]
        paired = statistics.median(ratios)  # each round's ratio: drift between rounds cancels
        verdict = f"(target <= 1.3: {'met' if paired <= 1.3 else 'MISSED'})" if name == TARGETED else ""
        print(f"  {name:<22} {statistics.median(times[name]) * 1e3:6.2f} ms, ratio {paired:.2f} {verdict}")


def main_job(rounds: int) -> None:
    python = sys.executable
    script = Path(python).parent / "rnnkit"
    rnnkit = [str(script)] if script.is_file() else [python, "-m", "rnnkit"]
    with tempfile.TemporaryDirectory(prefix="rnnkit-mainjob-") as tmp:
        out = f"out_dir={tmp}/run"
        commands = {
            "import torch": [python, "-c", "import torch"],
            "import torch, torch._dynamo": [python, "-c", "import torch, torch._dynamo"],
            "imports of the main job": [python, "-c", FLOOR],
            "main job": [*rnnkit, "train", "--overwrite", str(CONFIG), out],
            "main job, data.classical=[]": [
                *rnnkit,
                "train",
                "--overwrite",
                str(CONFIG),
                out,
                "data.classical=[]",
            ],
        }
        env = {**os.environ, "PYTHONPYCACHEPREFIX": f"{tmp}/pycache"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(rounds + 1):
            for name, command in commands.items():
                start = time.perf_counter()
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
                if round_:
                    times[name].append(time.perf_counter() - start)
    floor = statistics.median(times["import torch"])
    print(f"\nfresh processes, median wall seconds of {rounds} interleaved rounds; ratio to import torch:")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        target = (
            "  (target <= 2.5: " + ("met)" if median / floor <= 2.5 else "MISSED)")
            if name == "main job"
            else ""
        )
        print(f"  {name:<30} {median:6.2f} s  {median / floor:5.2f}x{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of part 1 (after one warm-up)")
    parser.add_argument(
        "--epochs", type=int, default=17, help="epochs a run (17 x 28 = the main job's 476 steps)"
    )
    parser.add_argument(
        "--job-rounds", type=int, default=3, help="timed rounds of part 2 (after one warm-up)"
    )
    parser.add_argument("--profile", action="store_true", help="profile one Trainer run instead of part 2")
    args = parser.parse_args()
    print(setting())
    per_step(args.rounds, args.epochs, args.profile)
    if not args.profile:
        main_job(args.job_rounds)


if __name__ == "__main__":
    main()
