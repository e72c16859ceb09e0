"""Optimisers and learning-rate schedules from their configs."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from rnnkit.train.options import OptimizerConfig, ScheduleConfig


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | list[dict], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """The optimiser ``config`` names over ``params``: parameters, or torch's param-group dicts
    (each may set its own "lr"; :func:`rnnkit.train.finetune.optimizer_params`)."""
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

    rate = base * warm-up * (step decay | cosine | slanted triangular | 1) * plateau scale. Linear
    warm-up over ``warmup_steps``; "step" multiplies by ``gamma`` every ``step_size`` steps; "cosine"
    anneals to ``min_lr`` at ``total_steps`` (Loshchilov & Hutter 2017, without restarts);
    "slanted_triangular" rises and falls as :func:`slanted_triangular`; "plateau" multiplies by
    ``factor`` after ``patience`` evaluations without improvement, down to ``min_lr``.

    Every group is scaled by the same factor, so groups of different base rates (discriminative
    rates) keep their ratios; ``min_lr`` is the floor of the largest base rate (``reference``, the
    top layer group's: ``train.optimizer.lr``), the other groups' floors in proportion.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int) -> None:
        self.optimizer, self.config, self.total_steps = optimizer, config, total_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.reference = max(self.base_lrs)
        self.scale, self.best, self.bad_evals = 1.0, math.inf, 0

    def set(self, step: int) -> float:
        """Apply the rate for optimiser step ``step`` (0-based); returns the reference group's rate."""
        factor = self._factor(step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor * self.scale
        return self.reference * factor * self.scale

    def observe(self, value: float) -> None:
        """Feed an evaluation (lower is better) to the plateau rule."""
        if self.config.name != "plateau":
            return
        if value < self.best:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.config.patience:
            floor = min(1.0, self.config.min_lr / self.reference)
            self.scale = max(self.scale * self.config.factor, floor)
            self.bad_evals = 0

    def _factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        after = step - c.warmup_steps
        if c.name == "step":
            return c.gamma ** (after // c.step_size)
        if c.name == "cosine":
            span = max(1, self.total_steps - c.warmup_steps)
            floor = min(1.0, c.min_lr / self.reference)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
        if c.name == "slanted_triangular":
            return slanted_triangular(step, self.total_steps, c.cut_frac, c.ratio)
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


def slanted_triangular(t: int, T: int, cut_frac: float, ratio: float) -> float:
    """The share of the peak rate at step ``t`` of ``T`` (Howard & Ruder 2018, sec. 3.2, eq. 3).

    cut = floor(T * cut_frac); p = t / cut while t < cut, else 1 - (t - cut) / (cut * (1 / cut_frac - 1));
    share = (1 + p * (ratio - 1)) / ratio: a short linear rise from 1 / ratio to 1 at ``cut``, then a
    long linear fall back to 1 / ratio at T. cut is at least 1 (a run under 1 / cut_frac steps), and
    p stops at 0 past T.

    Example:
        >>> slanted_triangular(0, 100, 0.1, 32), slanted_triangular(10, 100, 0.1, 32)   # (1/32, 1.0)
    """
    cut = max(1, math.floor(T * cut_frac))
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + max(0.0, p) * (ratio - 1)) / ratio
