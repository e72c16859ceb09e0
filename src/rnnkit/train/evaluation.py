"""The trainer's evaluation bookkeeping: a history row per evaluation, the best value so far (kept
in memory and written to ``best.pt``) and early stopping after ``patience`` evaluations without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rnnkit.errors import TrainingError
from rnnkit.train.batches import Data

if TYPE_CHECKING:
    from rnnkit.train.trainer import Trainer


def evaluate_and_log(trainer: Trainer, val: Data | None) -> None:
    """Append a row (step, epoch, lr, the mean training loss since the last row, the validation
    losses) to the history, tell the callbacks, and track the monitored value."""
    row: dict[str, Any] = {
        "step": trainer.step,
        "epoch": trainer.epoch,
        "lr": trainer.optimizer.param_groups[-1]["lr"],  # the top layer group's (discriminative rates)
    }
    if trainer._loss_count:
        row["train_loss"] = trainer._loss_sum / trainer._loss_count
    trainer._loss_sum, trainer._loss_count = 0.0, 0
    if val is not None:
        row.update(trainer.evaluate(val))
    trainer.history.append(row)
    for callback in trainer.callbacks:
        callback.on_evaluate(trainer, row)
    config = trainer.config
    monitor = config.monitor if config.monitor in row or val is not None else "train_loss"
    if monitor not in row:
        raise TrainingError(
            f"train.monitor {config.monitor!r} is not among the evaluation's keys {sorted(row)}"
        )
    track_best(trainer, row[monitor])


def track_best(trainer: Trainer, value: float) -> None:
    """Feed ``value`` to the schedule; keep the weights when it is the best so far, else count a bad
    evaluation and stop once ``train.early_stopping.patience`` of them have come in a row."""
    sign = 1.0 if trainer.config.mode == "min" else -1.0
    trainer.schedule.observe(sign * value)
    stopping = trainer.config.early_stopping
    if trainer.best is None or sign * (trainer.best - value) > stopping.min_delta:
        trainer.best, trainer.best_step, trainer.bad_evals = value, trainer.step, 0
        trainer.best_model = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
        if trainer.run_dir is not None and trainer.dist.is_main:
            trainer.writer.save(
                {"model": trainer.best_model, "step": trainer.step, "value": value},
                trainer.run_dir / "checkpoints" / "best.pt",
            )
        return
    trainer.bad_evals += 1
    if stopping.patience is not None and trainer.bad_evals >= stopping.patience:
        trainer._stop = trainer.stopped_early = True
