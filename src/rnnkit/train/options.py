"""The trainer's typed config: optimiser, schedule, clipping, early stopping, checkpoints, and ULMFiT's
fine-tuning recipe (Howard & Ruder 2018): discriminative rates, slanted triangular rates, gradual
unfreezing; each off by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rnnkit.config import Config


class OptimizerConfig(Config):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd and rmsprop")
    nesterov: bool = Field(False, description="sgd, needs momentum > 0")
    betas: tuple[float, float] = (0.9, 0.999)
    discriminative: float | None = Field(
        None,
        ge=1,
        description="ULMFiT's discriminative rates: the model's top layer group learns at lr, each group "
        "below at lr / discriminative ** depth (2.6 in Howard & Ruder 2018); None: one rate for all",
    )

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer.name 'sgd' and momentum > 0")
        return self


class ScheduleConfig(Config):
    """Learning rate per optimiser step: linear warm-up, then constant, step decay, cosine or plateau;
    or slanted triangular (ULMFiT), which warms up by itself."""

    name: Literal["constant", "step", "cosine", "plateau", "slanted_triangular"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(1000, gt=0, description="step: decay every this many steps")
    gamma: float = Field(0.1, gt=0, description="step: multiply the rate by this")
    min_lr: float = Field(0.0, ge=0, description="cosine: final rate; plateau: lowest rate")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: multiply the rate by this")
    patience: int = Field(2, ge=0, description="plateau: evaluations without improvement")
    cut_frac: float = Field(
        0.1, gt=0, lt=1, description="slanted_triangular: the share of the steps over which the rate rises"
    )
    ratio: float = Field(
        32.0, ge=1, description="slanted_triangular: how many times the peak rate exceeds the lowest"
    )

    @model_validator(mode="after")
    def _one_warm_up(self):
        if self.name == "slanted_triangular" and self.warmup_steps:
            raise ValueError(
                "slanted_triangular warms up by itself over the first cut_frac of the steps: set "
                "train.schedule.warmup_steps to 0"
            )
        return self


class EarlyStoppingConfig(Config):
    patience: int | None = Field(None, ge=1, description="evaluations without improvement; None: off")
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True


class TrainConfig(Config):
    epochs: int | None = Field(10, gt=0)
    max_steps: int | None = Field(None, gt=0, description="optimiser steps; stops before epochs when reached")
    batch_size: int = Field(32, gt=0, description="global: split across processes under torchrun")
    shuffle: bool = True
    bucket: bool = Field(
        True, description="shuffled batches of similar lengths when the data has lengths (texts)"
    )
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    clip_grad_norm: float | None = Field(None, gt=0)
    clip_grad_value: float | None = Field(None, gt=0)
    accumulate: int = Field(
        1, gt=0, description="micro-batches per optimiser step; an epoch end steps with what it has"
    )
    tbptt: int | None = Field(None, gt=0, description="truncated BPTT: steps per chunk; None: full BPTT")
    checkpoint_activations: int | None = Field(
        None, gt=0, description="full BPTT in chunks of this many steps under activation checkpointing"
    )
    eval_every: int | None = Field(None, gt=0, description="steps; evaluation also runs at each epoch end")
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    checkpoint_every: int | None = Field(
        None, gt=0, description="steps; a checkpoint is also written per epoch"
    )
    nan_policy: Literal["raise", "skip", "restore"] = "raise"
    device: str | None = None
    amp: bool = Field(True, description="mixed precision on CUDA")
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    num_workers: int = Field(0, ge=0)
    gradual_unfreezing: bool = Field(
        False,
        description="ULMFiT: epoch 0 trains the model's top layer group only, each later epoch one more "
        "group down, until all train",
    )

    @model_validator(mode="after")
    def _one_way_to_cut_time(self):
        if self.tbptt is not None and self.checkpoint_activations is not None:
            raise ValueError(
                "set train.tbptt (truncated BPTT) or train.checkpoint_activations (full BPTT), not both"
            )
        return self

    @model_validator(mode="after")
    def _budget(self):
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self
