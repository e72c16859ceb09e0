"""Boundary checks for tensors users pass in: each failure names what was expected and what came."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rnnkit.errors import DTypeError, ShapeError


def check_input(x: Any, input_size: int, dtype: torch.dtype, step: bool = False) -> Tensor:
    """x must be (B, T, D) for a sequence (or (B, D) for one step), D == input_size, dtype as weights."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    rank, layout = (2, "(B, D)") if step else (3, "(B, T, D), batch first")
    real = x.is_floating_point()
    if x.dim() != rank:
        fix = "add a batch dimension with x.unsqueeze(0)" if x.dim() == rank - 1 else "reshape it"
        if not real and x.dim() == rank - 1:
            fix = (
                f"{x.dtype} values without a feature dimension look like token ids: look them up in "
                f"an nn.Embedding(V, D) first, which adds D; for one real feature use "
                f"x.unsqueeze(-1).to({dtype})"
            )
        raise ShapeError(f"input must be {layout}; got rank {x.dim()} with shape {tuple(x.shape)}: {fix}")
    if x.shape[-1] != input_size:
        raise ShapeError(
            f"input feature size must be {input_size} (the module's input_size); got {x.shape[-1]} "
            f"in shape {tuple(x.shape)}"
        )
    if 0 in x.shape[:-1]:
        raise ShapeError(f"input is empty: shape {tuple(x.shape)}; every batch needs B >= 1 and T >= 1")
    if x.dtype != dtype:
        if real:
            fix = f"cast the input with x.to({dtype}) or the module with .to({x.dtype})"
        else:  # a module's weights cannot become integers, bools or complex numbers: convert the input
            fix = (
                f"recurrent layers read real-valued features, so convert the input with x.to({dtype}); "
                "if the values are token ids, look them up in an nn.Embedding(V, D) first"
            )
        raise DTypeError(f"input dtype {x.dtype} does not match the weights' dtype {dtype}: {fix}")
    return x


def check_lengths(lengths: Sequence[int] | Tensor | None, batch_size: int, max_len: int) -> Tensor | None:
    """lengths (B,) as a list or a tensor on any device -> int64 CPU tensor with 1 <= length <= T."""
    if lengths is None:
        return None
    lens = torch.as_tensor(lengths.detach().cpu() if isinstance(lengths, Tensor) else lengths)
    if lens.dim() != 1 or lens.numel() != batch_size:
        raise ShapeError(
            f"lengths must hold one length per sequence: expected {batch_size}, got shape {tuple(lens.shape)}"
        )
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise ShapeError(f"lengths must be integers, got dtype {lens.dtype}")
    lens = lens.to(torch.int64)
    if torch.compiler.is_exporting():  # symbolic under torch.export (rnnkit.export documents the range)
        return lens
    if int(lens.min()) < 1 or int(lens.max()) > max_len:
        raise ShapeError(
            f"lengths must lie in [1, {max_len}] (the input's time steps); got min {int(lens.min())}, "
            f"max {int(lens.max())}: drop empty sequences and pad the input to the longest one"
        )
    return lens


def check_state(
    state: Any,
    state_type: type[NamedTuple],
    shape: tuple[int, ...],
    dtype: torch.dtype,
    widths: Sequence[int] | None = None,
):
    """state -> state_type with each field of ``shape``, or with ``widths`` (one a field) as their
    last sizes (a memory cell's fields differ); accepts torch's tuple (h, c) or a bare h."""
    fields = state_type._fields
    if isinstance(state, Tensor):
        state = (state,)
    if not isinstance(state, (tuple, list)) or len(state) != len(fields):
        got = type(state).__name__ if not isinstance(state, (tuple, list)) else f"{len(state)} tensors"
        raise ShapeError(f"state must be {state_type.__name__}{fields} (one tensor per field), got {got}")
    shapes = [shape] * len(fields) if widths is None else [(*shape[:-1], width) for width in widths]
    for name, t, expected in zip(fields, state, shapes, strict=True):
        if not isinstance(t, Tensor) or tuple(t.shape) != expected:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ShapeError(f"state.{name} must have shape {expected}, got {got}")
        if t.dtype != dtype:
            raise DTypeError(f"state.{name} dtype {t.dtype} does not match the weights' dtype {dtype}")
    return state_type(*state)
