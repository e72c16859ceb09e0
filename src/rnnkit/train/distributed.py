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
from torch.utils.checkpoint import checkpoint

from rnnkit.errors import ConfigError
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
    """Leave the process group once every process is here. A process that left first could destroy
    its end of a gather still in flight (gloo then aborts it: "terminate called without an active
    exception"); rank 0 evaluates and saves after training while the others wait."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


class LossModule(nn.Module):
    """Routes ``forward`` to ``model.loss`` so DistributedDataParallel syncs the task loss's gradients.

    With ``checkpoint_every=k`` a sequence is run in chunks of k steps under activation
    checkpointing (Chen et al. 2016): full BPTT whose memory holds each chunk's boundary state and
    one chunk's activations instead of every step's. The chunk losses are weighted by their share
    of the steps, which equals the whole sequence's loss when the model's loss is a mean over steps.
    """

    def __init__(self, model: nn.Module, checkpoint_every: int | None = None) -> None:
        super().__init__()
        self.model, self.checkpoint_every = model, checkpoint_every

    def forward(self, inputs, targets, lengths=None, state=None):
        k, T = self.checkpoint_every, inputs.shape[1]
        if k is None or k >= T or not torch.is_grad_enabled():
            return self.model.loss(inputs, targets, lengths=lengths, state=state)
        if lengths is not None or targets.dim() < 2 or targets.shape[1] != T:
            raise ConfigError(
                "train.checkpoint_activations cuts a batch along time, so it needs equal-length sequences "
                f"with a target per step (B, T, ...), T = {T}; this batch has "
                f"{'lengths' if lengths is not None else f'targets of shape {tuple(targets.shape)}'}: "
                "drop train.checkpoint_activations"
            )
        total = 0.0
        for x, y in zip(inputs.split(k, 1), targets.split(k, 1), strict=True):
            loss, state = checkpoint(self._chunk, x, y, state, use_reentrant=False)
            total = total + loss * (x.shape[1] / T)
        return total, state

    def _chunk(self, inputs, targets, state):
        return self.model.loss(inputs, targets, state=state)


def gather_to_main(obj, info: Dist) -> list | None:
    """Every process's ``obj`` in rank order on rank 0 (None elsewhere); [obj] in one process."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


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


def wrap(
    model: nn.Module, info: Dist, checkpoint_every: int | None = None, find_unused: bool = False
) -> nn.Module:
    """``model`` as a :class:`LossModule`, in DistributedDataParallel when several processes train.

    ``find_unused``: parameters may get no gradient in a step (gradual unfreezing sets
    ``requires_grad`` False after wrapping); DDP then looks for them after each forward instead of
    waiting for their gradients forever, and leaves their ``grad`` None on every process.
    """
    module = LossModule(model, checkpoint_every)
    if not info.enabled:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)
