"""Seeded inputs for the NTM paper's algorithmic problems (Graves, Wayne & Danihelka 2014, sec. 4.1-4.3).

    example = copy_example(torch.tensor([[1, 0, 1], [0, 1, 1]]))   # inputs (5, 4), targets (5, 3), mask (5,)
    data = AlgorithmicDataset("copy", size=1000, min_length=1, max_length=20, bits=8, seed=0)
    data[0]                                                       # an Example, drawn from (seed, 0)

Every example is an :class:`Example` of float inputs (T, D), float 0/1 targets (T, O) and a bool
mask (T,) that is True on the output steps only: the loss and the bits-wrong metric count there,
and targets are 0 everywhere else. A step's input is all zeros unless said otherwise below. With
``bits`` = b and a sequence of L random binary vectors x_0 .. x_{L-1}:

copy (sec. 4.1), D = b + 1, O = b, T = 2L + 1:
    steps 0 .. L-1 read [x_t, 0]; step L reads the delimiter [0 ... 0, 1]; steps L+1 .. 2L read zeros
    and must output x_0 .. x_{L-1} (mask True on exactly these L steps).

repeat copy (sec. 4.2), D = b + 2, O = b + 1, T = (n + 1) L + 2 for n repeats:
    steps 0 .. L-1 read [x_t, 0, 0]; step L reads [0 ... 0, 1, r], the delimiter and the repeat
    number n normalised as the paper does, to mean 0 and variance 1 over the training repeats
    1 .. R: r = (n - (R + 1) / 2) / sqrt((R^2 - 1) / 12) (r = n - 1 when R = 1). Steps L+1 ..
    L + nL output [x_{t mod L}, 0], the sequence n times; step nL + L + 1 outputs the end marker
    [0 ... 0, 1] (mask True on these nL + 1 steps).

associative recall (sec. 4.3), D = b + 2, O = b, with K items of I vectors each (the "length" is
K >= 2), T = K (I + 1) + 2I + 2:
    each item k reads one step [0 ... 0, 1, 0] (the item delimiter) then its I vectors [v, 0, 0];
    then [0 ... 0, 0, 1] (the query delimiter), the I vectors of item q (q < K - 1), and the query
    delimiter again; the last I steps read zeros and must output item q + 1 (mask True there).
    Items are distinct, so the answer is never ambiguous.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.errors import ConfigError, DataError, unknown_name

Problem = Literal["copy", "repeat_copy", "associative_recall"]
PROBLEMS: tuple[str, ...] = ("copy", "repeat_copy", "associative_recall")
EXTRA_INPUTS = {"copy": 1, "repeat_copy": 2, "associative_recall": 2}  # delimiter (and repeat) channels
EXTRA_OUTPUTS = {"copy": 0, "repeat_copy": 1, "associative_recall": 0}  # the end marker
SHORTEST = {"copy": 1, "repeat_copy": 1, "associative_recall": 2}  # the least length of each problem


class Example(NamedTuple):
    """inputs (T, D) float, targets (T, O) float 0/1 (0 off the mask), mask (T,) bool: the output steps."""

    inputs: Tensor
    targets: Tensor
    mask: Tensor


def input_size(problem: str, bits: int) -> int:
    """D: the bits plus the problem's delimiter (and repeat) channels."""
    return bits + EXTRA_INPUTS[_known(problem)]


def output_size(problem: str, bits: int) -> int:
    """O: the bits, plus the end-marker channel for repeat copy."""
    return bits + EXTRA_OUTPUTS[_known(problem)]


def num_steps(problem: str, length: int, repeats: int = 1, item_length: int = 3) -> int:
    """T of an example of ``length`` (items for associative recall) and ``repeats`` (repeat copy)."""
    if _known(problem) == "copy":
        return 2 * length + 1
    if problem == "repeat_copy":
        return (repeats + 1) * length + 2
    return length * (item_length + 1) + 2 * item_length + 2


def _known(problem: str) -> str:
    if problem not in PROBLEMS:
        raise unknown_name("problem", problem, PROBLEMS)
    return problem


def _binary(sequence, name: str, dims: int) -> Tensor:
    x = torch.as_tensor(sequence, dtype=torch.float32)
    if x.dim() != dims or 0 in x.shape or not bool(((x == 0) | (x == 1)).all()):
        shape = "(L, bits)" if dims == 2 else "(K, I, bits)"
        raise DataError(f"{name} must be a non-empty {shape} array of 0s and 1s, got shape {tuple(x.shape)}")
    return x


def copy_example(sequence) -> Example:
    """The copy example of ``sequence`` (L, bits) 0/1 (module docs): T = 2L + 1."""
    x = _binary(sequence, "sequence", 2)
    L, b = x.shape
    inputs, targets = torch.zeros(2 * L + 1, b + 1), torch.zeros(2 * L + 1, b)
    inputs[:L, :b] = x
    inputs[L, b] = 1.0  # the delimiter
    targets[L + 1 :] = x
    mask = torch.arange(2 * L + 1) > L
    return Example(inputs, targets, mask)


def normalised_repeats(repeats: int, max_repeats: int) -> float:
    """n scaled to mean 0, variance 1 over the uniform training repeats 1 .. R (sec. 4.2)."""
    if max_repeats == 1:
        return float(repeats - 1)
    return (repeats - (max_repeats + 1) / 2) / math.sqrt((max_repeats**2 - 1) / 12)


def repeat_copy_example(sequence, repeats: int, max_repeats: int) -> Example:
    """The repeat-copy example of ``sequence`` (L, bits) copied ``repeats`` times (module docs)."""
    x = _binary(sequence, "sequence", 2)
    if not isinstance(repeats, int) or repeats < 1:
        raise DataError(f"repeats must be an int >= 1, got {repeats!r}")
    L, b = x.shape
    T = (repeats + 1) * L + 2
    inputs, targets = torch.zeros(T, b + 2), torch.zeros(T, b + 1)
    inputs[:L, :b] = x
    inputs[L, b], inputs[L, b + 1] = 1.0, normalised_repeats(repeats, max_repeats)
    targets[L + 1 : T - 1, :b] = x.repeat(repeats, 1)  # (nL, b)
    targets[T - 1, b] = 1.0  # the end marker
    mask = torch.arange(T) > L
    return Example(inputs, targets, mask)


def associative_recall_example(items, query: int) -> Example:
    """The recall example of ``items`` (K, I, bits) 0/1, asking for the item after item ``query``."""
    x = _binary(items, "items", 3)
    K, I, b = x.shape
    if K < 2 or not isinstance(query, int) or not 0 <= query < K - 1:
        raise DataError(f"query must index an item with one after it, 0 <= query < {K - 1}, got {query!r}")
    T = K * (I + 1) + 2 * I + 2
    inputs, targets = torch.zeros(T, b + 2), torch.zeros(T, b)
    for k in range(K):
        start = k * (I + 1)
        inputs[start, b] = 1.0  # the item delimiter
        inputs[start + 1 : start + 1 + I, :b] = x[k]
    q = K * (I + 1)
    inputs[q, b + 1] = inputs[q + I + 1, b + 1] = 1.0  # the query delimiters around the query item
    inputs[q + 1 : q + 1 + I, :b] = x[query]
    targets[T - I :] = x[query + 1]
    mask = torch.arange(T) >= T - I
    return Example(inputs, targets, mask)


def sample(
    problem: str,
    rng: np.random.Generator,
    length: int,
    bits: int,
    *,
    repeats: int | None = None,
    max_repeats: int = 10,
    item_length: int = 3,
) -> Example:
    """One random example of ``length`` (items for associative recall) from ``rng``; repeat copy
    draws its repeats uniformly from 1 .. max_repeats unless ``repeats`` is given."""
    if _known(problem) == "associative_recall":
        if 2 ** (item_length * bits) < length:
            raise ConfigError(f"{length} distinct items need more than {item_length} x {bits} bits each")
        while True:  # distinct items, so the query names one
            items = rng.integers(0, 2, (length, item_length, bits))
            if len(np.unique(items.reshape(length, -1), axis=0)) == length:
                break
        return associative_recall_example(items, int(rng.integers(0, length - 1)))
    sequence = rng.integers(0, 2, (length, bits))
    if problem == "copy":
        return copy_example(sequence)
    n = int(rng.integers(1, max_repeats + 1)) if repeats is None else repeats
    return repeat_copy_example(sequence, n, max_repeats)


class AlgorithmicDataset(Dataset):
    """``size`` examples of one problem, lengths uniform in ``min_length`` .. ``max_length``.

    The lengths (and repeat copy's repeats, unless ``repeats`` fixes them) are drawn up front from
    (``seed``, ``stream``); example i's bits from the generator seeded (seed, stream, 1, i), when it
    is asked for, so a dataset of any size costs no memory and reads the same every time; datasets
    of one seed and different streams (training, validation, each test length) share nothing.
    ``lengths`` holds each example's T, so the trainer can batch examples of similar length together.
    """

    def __init__(
        self,
        problem: str,
        size: int,
        min_length: int,
        max_length: int,
        bits: int,
        seed: int,
        *,
        stream: int = 0,
        repeats: int | None = None,
        max_repeats: int = 10,
        item_length: int = 3,
    ) -> None:
        if not SHORTEST[_known(problem)] <= min_length <= max_length:
            raise ConfigError(
                f"{problem} lengths must satisfy {SHORTEST[problem]} <= min_length <= max_length, got "
                f"{min_length} .. {max_length}"
            )
        rng = np.random.default_rng([seed, stream, 0])
        self.problem, self.bits, self.seed, self.stream = problem, bits, seed, stream
        self.options = {"max_repeats": max_repeats, "item_length": item_length}
        self.sizes = rng.integers(min_length, max_length + 1, size)
        n = rng.integers(1, max_repeats + 1, size) if repeats is None else np.full(size, repeats)
        self.repeats = n if problem == "repeat_copy" else np.ones(size, dtype=np.int64)
        pairs = zip(self.sizes.tolist(), self.repeats.tolist(), strict=True)
        self.lengths = np.array([num_steps(problem, k, r, item_length) for k, r in pairs])  # T of each

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> Example:
        rng = np.random.default_rng([self.seed, self.stream, 1, index])
        n = int(self.repeats[index])
        return sample(self.problem, rng, int(self.sizes[index]), self.bits, repeats=n, **self.options)
