"""The trainer's full state as one checkpoint, and back: everything a stopped run needs to go on
exactly as if it had not stopped.

That is the weights, optimiser, LR schedule and AMP scaler; every process's RNG states and carried
recurrent state (gathered to rank 0, which alone writes the file); the data position down to the
TBPTT chunk and the accumulation count; the running training loss, the history, the early-stopping
record and the count of skipped batches. ``last.pt`` is saved keeping the one before it, and a
resume that finds ``last.pt`` damaged goes on from that one (see :mod:`rnnkit.train.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit.errors import TrainingError
from rnnkit.train import checkpoint, distributed

if TYPE_CHECKING:
    from rnnkit.train.trainer import Trainer

POSITION = ("step", "epoch", "batch_index", "chunk_index", "micro")
KEYS = (  # what a resume reads: a checkpoint without one of them is damaged
    "model",
    "optimizer",
    "schedule",
    "scaler",
    "ranks",
    "position",
    "loss_running",
    "history",
    "best",
    "skipped",
)


def save(trainer: Trainer, path: Path) -> None:
    """Write the trainer's state to ``path`` (every process takes part; rank 0 writes)."""
    # what differs between processes (RNG, the rows' carried state) travels to rank 0: one file
    carried = None if trainer.carried is None else list(trainer.carried)
    mine = {"rng": checkpoint.rng_state(), "carried": carried}
    ranks = distributed.gather_to_main(mine, trainer.dist)
    if not trainer.dist.is_main:
        return
    state = {
        "format": checkpoint.CHECKPOINT_FORMAT,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
        "ranks": ranks,
        "position": {k: getattr(trainer, k) for k in POSITION},
        "loss_running": [trainer._loss_sum, trainer._loss_count],
        "history": trainer.history,
        "best": {
            "value": trainer.best,
            "step": trainer.best_step,
            "bad_evals": trainer.bad_evals,
            "model": trainer.best_model,
            "stopped": trainer._stop,
        },
        "skipped": trainer.skipped,
    }
    trainer.writer.save(state, path, keep_previous=path == trainer.checkpoint_path)


def drop_previous(trainer: Trainer) -> None:
    """A finished run keeps ``last.pt`` and ``best.pt`` only: remove ``last.prev.pt`` (rank 0)."""
    if trainer.checkpoint_path is not None and trainer.dist.is_main:
        checkpoint.drop_previous(trainer.checkpoint_path)


def load(trainer: Trainer, path: str | Path | None) -> None:
    """Restore the trainer from ``path``, or from the checkpoint before it when ``path`` is damaged."""
    found = None if path is None else checkpoint.load_latest(path, KEYS, warn=trainer.dist.is_main)
    if found is None:
        raise TrainingError(
            f"no checkpoint to resume from at {path}: train first, with train.checkpoint_every "
            "set for checkpoints within an epoch"
        )
    restore(trainer, *found)


def restore(trainer: Trainer, saved: dict[str, Any], source: Path) -> None:
    """Put the state ``saved`` (read from ``source``) back into ``trainer``."""
    trainer.model.load_state_dict(saved["model"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.schedule.load_state_dict(saved["schedule"])
    if trainer.scaler is not None and saved["scaler"] is not None:
        trainer.scaler.load_state_dict(saved["scaler"])
    world_size = trainer.dist.world_size
    if len(saved["ranks"]) != world_size:
        raise TrainingError(
            f"{source} was written by {len(saved['ranks'])} process(es); resume it with as many "
            f"(this run has {world_size})"
        )
    mine = saved["ranks"][trainer.dist.rank]
    checkpoint.set_rng_state(mine["rng"])
    for key, value in saved["position"].items():
        setattr(trainer, key, value)
    if mine["carried"] is not None:
        state_type = type(trainer.model.initial_state(1))
        trainer.carried = state_type(*(t.to(trainer.device) for t in mine["carried"]))
    trainer._loss_sum, trainer._loss_count = saved["loss_running"]
    trainer.history, trainer.skipped = saved["history"], saved["skipped"]
    best = saved["best"]
    trainer.best, trainer.best_step, trainer.bad_evals, trainer.best_model = (
        best["value"],
        best["step"],
        best["bad_evals"],
        best["model"],
    )
    trainer._stop = trainer.stopped_early = best["stopped"]
