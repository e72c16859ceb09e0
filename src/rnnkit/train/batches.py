"""How the trainer cuts its data: each process's example order per epoch, the truncated-BPTT chunks
of a batch, and the number of optimiser steps a run will take."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnkit.data import Batch, Stream
from rnnkit.data.sampling import bucket_order
from rnnkit.errors import ConfigError, DataError
from rnnkit.train.options import TrainConfig

Data = Dataset | Stream


def epoch_order(
    n: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    lengths=None,
    batch_size: int | None = None,
    weights=None,
) -> list[int]:
    """This process's example indices for ``epoch``: one seeded permutation, padded and dealt by rank.

    The permutation depends only on (seed, epoch), so N processes with batch b together see the
    batches one process with batch N*b sees, as torch's DistributedSampler does. Given ``lengths``
    and the (global) ``batch_size``, the permutation is regrouped so each batch holds examples of
    similar length (:func:`rnnkit.data.bucket_order`), which wastes less time on padding. Given
    ``weights`` (n,), the epoch is n draws with replacement, example i with probability
    weights[i] / sum(weights), seeded alike (shuffled or not).
    """
    if weights is not None:
        epoch_seed = seed * 1_000_003 + epoch
        w = np.asarray(weights, dtype=np.float64)
        if len(w) != n or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise DataError(f"sample weights must be {n} finite values >= 0, not all 0")
        order = np.random.default_rng(epoch_seed).choice(n, size=n, p=w / w.sum()).tolist()
    elif shuffle:
        epoch_seed = seed * 1_000_003 + epoch  # (seed, epoch) pairs never collide
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed)).tolist()
        if lengths is not None and batch_size:
            order = bucket_order(order, lengths, batch_size, seed=epoch_seed)
    else:
        order = list(range(n))
    order += order[: (-n) % world_size]
    return order[rank::world_size]


def tbptt_chunks(batch: Batch, k: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) pairs of ``batch`` cut along time into chunks of ``k`` steps (one when None)."""
    if k is None:
        return [(batch.inputs, batch.targets)]
    if batch.lengths is not None:
        raise ConfigError("train.tbptt needs equal-length sequences or a Stream; this batch has lengths")
    T = batch.inputs.shape[1]
    if batch.targets.dim() < 2 or batch.targets.shape[1] != T:
        raise ConfigError(
            f"train.tbptt needs a target per time step (B, T, ...) with T = {T}; "
            f"got targets of shape {tuple(batch.targets.shape)}"
        )
    return list(zip(batch.inputs.split(k, 1), batch.targets.split(k, 1), strict=True))


def count_steps(train: Data, config: TrainConfig) -> int:
    """Optimiser steps in the run: the epochs' worth of batches, chunks and accumulation, or max_steps."""
    c = config
    first = train[0]
    steps_in = first.inputs.shape[1] if isinstance(train, Stream) else first[0].shape[0]
    chunks = 1 if c.tbptt is None else math.ceil(steps_in / c.tbptt)
    batches = len(train) if isinstance(train, Stream) else math.ceil(len(train) / c.batch_size)
    per_epoch = math.ceil(batches * chunks / c.accumulate)
    by_epochs = math.inf if c.epochs is None else c.epochs * per_epoch
    return int(min(by_epochs, c.max_steps or math.inf))
