"""What a run shows and leaves behind: a progress bar, a CSV log, TensorBoard, a loss-curve PNG.

A callback gets the trainer at each event and reads what it needs (``trainer.step``,
``trainer.history``, ...). Only the process of rank 0 runs callbacks.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import time
from pathlib import Path
from typing import Any

from rnnkit import plots


class Callback:
    def on_train_start(self, trainer) -> None: ...
    def on_step_end(self, trainer, loss: float, samples: int) -> None: ...
    def on_evaluate(self, trainer, row: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class ProgressBar(Callback):
    """tqdm bar over optimiser steps with the loss, the last evaluation and samples per second.

    The figures beside the bar are formatted at most every ``every`` seconds (as often as tqdm
    redraws), not at every step: a small model's step takes a millisecond or two."""

    every = 0.1

    def on_train_start(self, trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, unit="step", dynamic_ncols=True)
        self.samples, self.started, self.last = 0, time.perf_counter(), {}
        self.shown = -self.every

    def on_step_end(self, trainer, loss: float, samples: int) -> None:
        self.samples += samples
        now = time.perf_counter()
        if now - self.shown >= self.every:
            rate = self.samples / max(now - self.started, 1e-9)
            self.bar.set_postfix(loss=f"{loss:.4g}", **self.last, samples_per_s=f"{rate:.0f}", refresh=False)
            self.shown = now
        self.bar.update(1)

    def on_evaluate(self, trainer, row: dict[str, Any]) -> None:
        self.last = {k: f"{v:.4g}" for k, v in row.items() if k.startswith("val_")}

    def on_train_end(self, trainer) -> None:
        self.bar.close()


class CSVLogger(Callback):
    """``log.csv``: one row per evaluation, rewritten whole so a resumed run never repeats a row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_evaluate(self, trainer, row: dict[str, Any]) -> None:
        columns = list(dict.fromkeys(k for r in trainer.history for k in r))
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(trainer.history)


class TensorBoard(Callback):
    """Scalars of every evaluation, when the ``tensorboard`` package is installed; written to disk
    every ``flush_secs`` seconds and at the end (not at each evaluation: short epochs paid for it)."""

    def __init__(self, log_dir: str | Path, flush_secs: int = 10) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), flush_secs=flush_secs)

    def on_evaluate(self, trainer, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["step"])

    def on_train_end(self, trainer) -> None:
        self.writer.close()


class LossCurve(Callback):
    """``loss.png``: training and validation loss against the optimiser step.

    Drawn at the end of training, and at an epoch end when ``every`` seconds have passed since the
    last drawing, so a long run shows its curve as it goes without paying for a plot per epoch.
    """

    def __init__(self, path: str | Path, every: float = 60.0) -> None:
        self.path, self.every, self.drawn = Path(path), every, time.monotonic()

    def on_epoch_end(self, trainer) -> None:
        if time.monotonic() - self.drawn >= self.every:
            self.on_train_end(trainer)

    def on_train_end(self, trainer) -> None:
        rows = [r for r in trainer.history if "train_loss" in r]
        if rows:
            curves = {
                k: [r.get(k, float("nan")) for r in rows] for k in ("train_loss", "val_loss") if k in rows[-1]
            }
            plots.plot_loss_curves(curves, self.path, x=[r["step"] for r in rows], xlabel="step")
        self.drawn = time.monotonic()


def default_callbacks(run_dir: Path, progress: bool = True, tensorboard: bool = True) -> list[Callback]:
    callbacks: list[Callback] = [CSVLogger(run_dir / "log.csv")]
    if importlib.util.find_spec("matplotlib") is not None:  # plots are optional: pip install 'rnnkit[plots]'
        callbacks.append(LossCurve(run_dir / "loss.png"))
    if progress:
        callbacks.insert(0, ProgressBar())
    if tensorboard:
        with contextlib.suppress(ImportError):  # tensorboard is optional
            callbacks.append(TensorBoard(run_dir / "tensorboard"))
    return callbacks
