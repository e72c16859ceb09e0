"""Length bucketing: an epoch's order regrouped so each batch holds texts of similar length.

    order = bucket_order(shuffled, dataset.lengths, batch_size=32, seed=epoch)   # a permutation of shuffled
    padding_fraction(order, dataset.lengths, 32)                                 # the share of padded steps

Not tied to text: any dataset with a length per example (the trainer uses it for every padded batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnkit.errors import ConfigError


def bucket_order(
    order: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_size: int, pool: int = 50, seed: int = 0
) -> list[int]:
    """``order`` regrouped so each run of ``batch_size`` indices holds similar lengths.

    ``order`` (an epoch's shuffled indices) is cut into pools of ``batch_size * pool``; each pool is
    sorted by length and cut into batches, and the batches are shuffled (seeded), so batches differ
    from epoch to epoch while padding stays small. The one partial batch, if any, stays last, so the
    batch boundaries of a loader reading ``batch_size`` at a time fall between the buckets. The result
    is a permutation of ``order``: nothing dropped or repeated.
    """
    if batch_size < 1 or pool < 1:
        raise ConfigError(f"batch_size and pool must be >= 1, got {batch_size} and {pool}")
    lengths = np.asarray(lengths)
    span = batch_size * pool
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        part = np.asarray(order[start : start + span], dtype=np.int64)
        part = part[np.argsort(lengths[part], kind="stable")]  # by length, within the pool
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    tail = batches.pop() if batches and len(batches[-1]) < batch_size else []
    shuffled = np.random.default_rng(seed).permutation(len(batches))
    return [i for k in shuffled for i in batches[k]] + tail


def padding_fraction(order: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_size: int) -> float:
    """The share of padded positions when ``order`` is read ``batch_size`` at a time and padded per batch."""
    lengths = np.asarray(lengths)
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[np.asarray(order[start : start + batch_size], dtype=np.int64)]
        padded += int(batch.max()) * len(batch)
        real += int(batch.sum())
    return 1.0 - real / padded if padded else 0.0
