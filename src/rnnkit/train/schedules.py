"""Optimisers and learning-rate schedules from their configs."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from rnnkit.train.options import OptimizerConfig, ScheduleConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    c = config
    if c.name == "sgd":
        return torch.optim.SGD(
            params, c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
        )
    if c.name == "adam":
        return torch.optim.Adam(params, c.lr, betas=c.betas, weight_decay=c.weight_decay)
    if c.name == "adamw":
        return torch.optim.AdamW(params, c.lr, betas=c.betas, weight_decay=c.weight_decay)
    return torch.optim.RMSprop(params, c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


class LRSchedule:
    """Sets the rate of every parameter group before each optimiser step.

    rate = base * warm-up * (step decay | cosine | 1) * plateau scale. Linear warm-up over
    ``warmup_steps``; "step" multiplies by ``gamma`` every ``step_size`` steps; "cosine" anneals to
    ``min_lr`` at ``total_steps`` (Loshchilov & Hutter 2017, without restarts); "plateau" multiplies
    by ``factor`` after ``patience`` evaluations without improvement, down to ``min_lr``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int) -> None:
        self.optimizer, self.config, self.total_steps = optimizer, config, total_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.scale, self.best, self.bad_evals = 1.0, math.inf, 0

    def set(self, step: int) -> float:
        """Apply the rate for optimiser step ``step`` (0-based); returns the first group's rate."""
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self._factor(step, base) * self.scale
        return self.optimizer.param_groups[0]["lr"]

    def observe(self, value: float) -> None:
        """Feed an evaluation (lower is better) to the plateau rule."""
        if self.config.name != "plateau":
            return
        if value < self.best:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.config.patience:
            floor = min(1.0, self.config.min_lr / self.base_lrs[0])
            self.scale = max(self.scale * self.config.factor, floor)
            self.bad_evals = 0

    def _factor(self, step: int, base: float) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        after = step - c.warmup_steps
        if c.name == "step":
            return c.gamma ** (after // c.step_size)
        if c.name == "cosine":
            span = max(1, self.total_steps - c.warmup_steps)
            floor = min(1.0, c.min_lr / base)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
        return 1.0

    def state_dict(self) -> dict:
        return {
            "scale": self.scale,
            "best": self.best,
            "bad_evals": self.bad_evals,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad_evals = state["scale"], state["best"], state["bad_evals"]
        self.total_steps = state["total_steps"]
