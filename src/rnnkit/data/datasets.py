"""Token id sequences as a dataset, and the collate that pads them into one Batch.

dataset = TextDataset([codec.encode(t) for t in data.texts], labels.encode(data.labels))
# Trainer(..., collate=pad_collate): Batch(inputs (B, T) long, targets, lengths (B,))
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.data.batch import Batch
from rnnkit.data.encoding import _some
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError, ShapeError


class TextDataset(Dataset):
    """Token id sequences and their targets: item i is (ids (T_i,) long, target).

    The ids are kept in one flat int64 array (not one Python list per text); ``lengths`` (N,) holds
    each sequence's length, for :func:`rnnkit.data.bucket_order`.
    """

    def __init__(self, ids: Sequence[Sequence[int]], targets: Tensor | Sequence) -> None:
        self.lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))  # (N,)
        empty = np.flatnonzero(self.lengths == 0).tolist()
        if empty:
            raise DataError(
                f"sequences {_some(empty)} (counted from 0) have no tokens: drop empty texts before encoding"
            )
        self.targets = torch.as_tensor(targets)
        if len(self.targets) != len(ids):
            raise ShapeError(f"{len(ids)} sequences but {len(self.targets)} targets; give one target each")
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])  # (N + 1,)
        self.flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self.lengths)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {n} sequences")
        index %= n
        start, end = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(self.flat[start:end]), self.targets[index]


def pad_collate(examples: Sequence[tuple[Tensor, Tensor]], pad_id: int = Vocab.pad_id) -> Batch:
    """(ids (T_i,), target) examples -> Batch(inputs (B, T_max) long, targets, lengths (B,)).

    Inputs are padded with ``pad_id`` after each sequence's end; targets are stacked as they are.
    """
    if not examples:
        raise DataError("cannot collate an empty list of examples")
    sequences, targets = zip(*examples, strict=True)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)  # (B,)
    inputs = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True, padding_value=pad_id)
    return Batch(inputs, torch.stack(targets), lengths)  # inputs (B, T_max)
