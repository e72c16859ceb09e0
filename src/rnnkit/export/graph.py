"""What an ONNX graph is: named ports with shapes, and the padded example batches they are fed.

A :class:`Graph` is one ONNX file: ``run(model, *inputs)`` gives its outputs from a model (the
exportable twin when traced, the original when checked), and ``example(model, B, T, gen)`` a padded
batch of mixed lengths to trace and to check with. Shapes use the letters of :mod:`rnnkit`; the
letters in :data:`DYNAMIC` are dynamic axes, numbers are fixed by the model's config. The helpers
below are shared by the families of task models (:mod:`rnnkit.export.signatures` lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

DYNAMIC = ("B", "T", "S", "N", "W")  # batch, time, source time, rows, characters a token


@dataclass(frozen=True)
class Port:
    """One named input or output of a graph."""

    name: str
    shape: tuple[str | int, ...]
    dtype: str  # "float32", "int64" or "bool"
    meaning: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "meaning": self.meaning}


@dataclass(frozen=True)
class Graph:
    """One ONNX file: its ports, how a model computes it, and a padded example batch (module docs)."""

    name: str  # the file is <name>.onnx
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    run: Callable[..., tuple[Tensor, ...]]
    example: Callable[[nn.Module, int, int, torch.Generator], tuple[Tensor, ...]]
    note: str = ""


LENGTHS = Port(
    "lengths", ("B",), "int64", "real steps per sequence, 1 <= length <= T; steps after are padding"
)


def example_lengths(B: int, T: int, gen: torch.Generator) -> Tensor:
    """(B,) mixed lengths in [1, T]: the first row full, the last one step long."""
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[-1] = T, 1
    return lengths


def state_ports(state_type: type, L: int, H: int, suffix: str, meaning: str) -> tuple[Port, ...]:
    """One (L, B, H) port per field of a recurrent state, named ``<field><suffix>``."""
    fields = state_type._fields
    return tuple(Port(f"{f}{suffix}", (L, "B", H), "float32", f"{meaning} ({f})") for f in fields)


def state_example(fields: int, L: int, B: int, H: int, gen: torch.Generator) -> tuple[Tensor, ...]:
    """``fields`` random states (L, B, H), small enough to keep the cells out of saturation."""
    return tuple(0.5 * torch.randn(L, B, H, generator=gen) for _ in range(fields))


def sequence_input(vocab: int | None, width: int | None) -> Port:
    """Token ids (B, T) when the model embeds a vocabulary, else features (B, T, width)."""
    if vocab is not None:
        return Port("tokens", ("B", "T"), "int64", f"token ids in [0, {vocab}), padding after each length")
    return Port("inputs", ("B", "T", width), "float32", "features per step, padding after each length")


def sequence_example(vocab: int | None, width: int | None):
    """The ``example`` of a graph that takes :func:`sequence_input` and :data:`LENGTHS`."""

    def example(m, B, T, gen):
        if vocab is not None:
            x = torch.randint(1, vocab, (B, T), generator=gen)
        else:
            x = torch.randn(B, T, width, generator=gen)
        return x, example_lengths(B, T, gen)

    return example
