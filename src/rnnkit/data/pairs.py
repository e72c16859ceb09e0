"""Pairs of sequences: parallel texts for seq2seq, tokens and their tags for tagging, and their batches.

    pairs = read_pairs("train.tsv")                           # source<TAB>target lines
    pairs = read_pairs("train.en", target_path="train.fr")    # two aligned files, line by line
    pairs = read_pairs("words.csv", source_column="word", target_column="phonemes")   # a table
    dataset = PairDataset([src.encode(s) for s in pairs.sources],
                          [tgt.encode(t, eos=True) for t in pairs.targets])
    # Trainer(..., collate=pad_pairs): Batch(inputs (B, S), targets (B, T), lengths (B,))

Sources are padded with ``<pad>`` (id 0) and targets with -100, the id cross-entropy skips, so a
model's loss reads real target steps only.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.data.batch import Batch
from rnnkit.data.encoding import _decoded, _some
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError, ShapeError

IGNORE = -100  # the target id torch's cross_entropy skips
TABLES = (".csv", ".jsonl", ".json")


class TextPairs(NamedTuple):
    """Source and target texts, aligned; ``origin`` names where they came from, for messages."""

    sources: list[str]
    targets: list[str]
    origin: str


def read_pairs(
    path: str | Path,
    target_path: str | Path | None = None,
    source_column: str | None = None,
    target_column: str | None = None,
    encoding: str = "utf-8",
) -> TextPairs:
    """Source/target texts from one file of pairs or two aligned files.

    - ``target_path`` given: line i of ``path`` is the source of line i of ``target_path``.
    - a ``.csv`` or ``.jsonl`` table: columns ``source_column`` and ``target_column`` (default
      "source" and "target"); a ``.tsv`` is read as a table too when the columns are named.
    - otherwise (``.tsv``, ``.txt``, ...): one ``source<TAB>target`` pair a line, no header.

    Spaces around each side are dropped. Blank lines are skipped (in aligned files, only where both
    are blank). Raises DataError naming
    the lines with no tab, more than one tab, or an empty side, and files of different lengths.
    """
    path = Path(path)
    if target_path is not None:
        return _aligned(path, Path(target_path), encoding)
    suffix = path.suffix.lower()
    if suffix in TABLES or (suffix == ".tsv" and (source_column or target_column)):
        from rnnkit.data.readers import read_labelled

        table = read_labelled(path, source_column or "source", target_column or "target", encoding)
        if any(isinstance(target, list) for target in table.labels):
            raise DataError(f"{path.name}: column {target_column or 'target'!r} holds lists; give texts")
        return TextPairs([t.strip() for t in table.texts], [t.strip() for t in table.labels], str(path))
    if source_column or target_column:
        raise DataError(
            f"{path.name}: columns are named only in .csv, .tsv and .jsonl tables; a {suffix or 'plain'} "
            "file holds source<TAB>target lines: drop source_column and target_column"
        )
    sources, targets, bad = [], [], []
    for number, line in enumerate(_decoded(path, encoding).split("\n"), 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            bad.append(number)
            continue
        sources.append(fields[0])
        targets.append(fields[1])
    if bad:
        raise DataError(
            f"{path.name}: lines {_some(bad)} are not source<TAB>target (exactly one tab, text on both "
            "sides): fix them, or give a .csv/.jsonl table with source_column and target_column"
        )
    if not sources:
        raise DataError(f"{path} holds no pairs: expected source<TAB>target lines")
    return TextPairs(sources, targets, str(path))


def _aligned(path: Path, target_path: Path, encoding: str) -> TextPairs:
    lines = [_decoded(p, encoding).rstrip("\n").split("\n") for p in (path, target_path)]
    if len(lines[0]) != len(lines[1]):
        raise DataError(
            f"{path.name} has {len(lines[0])} lines but {target_path.name} has {len(lines[1])}: aligned "
            "files need one target line per source line"
        )
    pairs = [(n, s.strip(), t.strip()) for n, (s, t) in enumerate(zip(*lines, strict=True), 1)]
    pairs = [(n, s, t) for n, s, t in pairs if s or t]
    one_sided = [n for n, s, t in pairs if not (s and t)]
    if one_sided:
        raise DataError(
            f"{path.name} and {target_path.name}: lines {_some(one_sided)} are blank on one side only: "
            "give every source line its target"
        )
    if not pairs:
        raise DataError(f"{path} and {target_path} hold no pairs")
    return TextPairs([s for _, s, _ in pairs], [t for _, _, t in pairs], f"{path} + {target_path.name}")


class PairDataset(Dataset):
    """Source and target id sequences: item i is (source (S_i,) long, target (T_i,) long).

    Both sides are kept in flat int64 arrays; ``lengths`` (N,) holds the source lengths, for
    :func:`rnnkit.data.bucket_order`. ``same_length`` requires T_i == S_i (tags, one per token).
    """

    def __init__(
        self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], same_length: bool = False
    ) -> None:
        if len(sources) != len(targets):
            raise ShapeError(f"{len(sources)} sources but {len(targets)} targets; give one target each")
        self.lengths, self.offsets, self.flat = _flat(sources, "sources")
        self.target_lengths, self.target_offsets, self.target_flat = _flat(targets, "targets")
        if same_length:
            unequal = np.flatnonzero(self.lengths != self.target_lengths).tolist()
            if unequal:
                i = unequal[0]
                raise ShapeError(
                    f"sequences {_some(unequal)} (counted from 0) have a different number of tokens and "
                    f"targets (sequence {i}: {self.lengths[i]} tokens, {self.target_lengths[i]} targets): "
                    "give one target per token"
                )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self.lengths)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {n} pairs")
        index %= n
        source = self.flat[self.offsets[index] : self.offsets[index + 1]]
        target = self.target_flat[self.target_offsets[index] : self.target_offsets[index + 1]]
        return torch.from_numpy(source), torch.from_numpy(target)


def _flat(sequences: Sequence[Sequence[int]], what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))  # (N,)
    empty = np.flatnonzero(lengths == 0).tolist()
    if empty:
        raise DataError(f"{what} {_some(empty)} (counted from 0) have no tokens: drop empty texts first")
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (N + 1,)
    flat = np.fromiter(chain.from_iterable(sequences), dtype=np.int64, count=int(offsets[-1]))
    return lengths, offsets, flat


def pad_pairs(examples: Sequence[tuple[Tensor, Tensor]], pad_id: int = Vocab.pad_id) -> Batch:
    """(source (S_i,), target (T_i,)) pairs -> Batch(inputs (B, S_max) padded with ``pad_id``,
    targets (B, T_max) padded with -100, lengths (B,) of the sources)."""
    if not examples:
        raise DataError("cannot collate an empty list of examples")
    sources, targets = zip(*examples, strict=True)
    lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)  # (B,)
    pad = torch.nn.utils.rnn.pad_sequence
    inputs = pad(list(sources), batch_first=True, padding_value=pad_id)  # (B, S_max)
    return Batch(inputs, pad(list(targets), batch_first=True, padding_value=IGNORE), lengths)
