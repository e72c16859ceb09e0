"""Multi-process training on torch.distributed: ``torchrun --nproc_per_node=N -m rnnkit train CONFIG``.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything runs in one process. The
backend is NCCL when each process has a GPU and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from rnnkit.runtime import select_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> Dist:
    """Join the process group torchrun prepared, or describe the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = select_device(device)
    if world == 1:
        return Dist(device=chosen)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Dist(rank, world, chosen)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class LossModule(nn.Module):
    """Routes ``forward`` to ``model.loss`` so DistributedDataParallel syncs the task loss's gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)


def mean_if_finite(value: torch.Tensor, info: Dist) -> float | None:
    """The mean of a scalar over all processes, or None when it is not finite on any of them.

    One all-reduce carries both, so every process takes the same branch.
    """
    finite = torch.isfinite(value)
    if not info.enabled:
        return float(value) if finite else None
    packed = torch.stack([torch.where(finite, value, 0.0), (~finite).to(value.dtype)]).to(torch.float64)
    dist.all_reduce(packed)
    return None if packed[1] > 0 else float(packed[0]) / info.world_size


def wrap(model: nn.Module, info: Dist) -> nn.Module:
    module = LossModule(model)
    if not info.enabled:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
