"""The NaN guard: what the trainer does with a non-finite loss or gradient, by ``train.nan_policy``.

``raise`` stops with a TrainingError naming the step; ``skip`` warns and drops the batch (its
gradients, its partial accumulation and the carried state); ``restore`` does the same and also
reloads the weights and optimiser from the last checkpoint.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from rnnkit.errors import TrainingError
from rnnkit.train import checkpoint

if TYPE_CHECKING:
    from rnnkit.train.trainer import Trainer


def handle(trainer: Trainer, what: str) -> None:
    """Apply the policy to a non-finite ``what`` (e.g. "loss (nan)") met in the current batch."""
    where = f"at step {trainer.step + 1} (epoch {trainer.epoch + 1}, batch {trainer.batch_index + 1})"
    policy = trainer.config.nan_policy
    if policy == "raise":
        raise TrainingError(
            f"non-finite {what} {where}: lower train.optimizer.lr, set "
            "train.clip_grad_norm, or set train.nan_policy to 'skip' or 'restore'"
        )
    warnings.warn(
        f"non-finite {what} {where}: {'skipping the batch' if policy == 'skip' else 'restoring'}",
        stacklevel=2,
    )
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.micro -= trainer.micro % trainer.config.accumulate
    trainer.carried, trainer.skipped = None, trainer.skipped + 1
    if policy == "restore":
        trainer.writer.wait()
        saved = checkpoint.load(trainer.checkpoint_path)
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])


def finite_grads(params: list[torch.Tensor]) -> bool:
    """Whether every gradient is finite, by one norm per tensor in one device sync (an overflowing
    norm counts as non-finite)."""
    if not params:
        return True
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params])
    return bool(torch.isfinite(norms).all())


def first_non_finite_grad(model: torch.nn.Module) -> str:
    """The name of the first parameter whose gradient holds a NaN or an infinity."""
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name
    return "an unknown parameter"
