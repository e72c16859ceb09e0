"""What the trainer feeds a task model: a Batch, a collate function, and an ordered Stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from rnnkit.errors import DataError


class Batch(NamedTuple):
    """inputs (B, T, ...), targets (B, ...), lengths (B,) or None.

    ``reset`` (B,) bool marks, in a Stream, the rows whose sequence starts at this batch: the trainer
    gives those rows a fresh state and carries the others' state over from the previous batch.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None
    reset: Tensor | None = None


def stack_pairs(examples: Sequence[tuple[Tensor, Tensor]]) -> Batch:
    """Collate (inputs, targets) examples of equal shapes into one Batch."""
    if not examples:
        raise DataError("cannot collate an empty list of examples")
    inputs, targets = zip(*examples, strict=True)
    return Batch(torch.stack(inputs), torch.stack(targets))


class Stream(Sequence[Batch]):
    """Batches that continue one another row by row (truncated BPTT over long streams).

    Row b of batch i+1 continues row b of batch i unless ``batch.reset[b]``; every batch must carry
    a ``reset`` mask, and the first must reset every row. The trainer reads them in order, never
    shuffled, and carries the model state across them.

    ``Stream(batches)`` keeps a list of batches, each checked by :meth:`check`. A stream too large to
    hold makes its batches when indexed instead: a subclass overrides ``__len__`` and ``__getitem__``,
    does not call this ``__init__``, and keeps the same rules (see :class:`rnnkit.data.TokenStream`).
    """

    def __init__(self, batches: Sequence[Batch]) -> None:
        if not batches:
            raise DataError("a Stream needs at least one batch")
        for i, batch in enumerate(batches):
            self.check(batch, i)
        self.batches = list(batches)

    @staticmethod
    def check(batch: Batch, index: int) -> None:
        """A DataError unless ``batch`` may stand at ``index`` of a Stream."""
        if batch.reset is None or batch.reset.shape != (batch.inputs.shape[0],):
            raise DataError(f"Stream batch {index} needs reset of shape (B,) = ({batch.inputs.shape[0]},)")
        if index == 0 and not bool(batch.reset.all()):
            raise DataError("the first batch of a Stream must reset every row (reset all True)")

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]
