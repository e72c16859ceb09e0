"""Recurrent(cell): runs a cell over the time axis, with lengths, direction and a carried state."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.checks import check_input, check_lengths, check_state
from rnnkit.errors import ShapeError
from rnnkit.functional.masking import lengths_to_mask, reverse_padded
from rnnkit.kernels.hook import compiled_scan


class RNNOutput(NamedTuple):
    """outputs (B, T, K*H), zero on padded steps; state: the cell's state type, fields (L*K, B, H)."""

    outputs: Tensor
    state: NamedTuple


def stack_states(states: list[NamedTuple]) -> NamedTuple:
    """Per-layer states with fields (N_i, B, H) -> one state with fields (sum N_i, B, H)."""
    return type(states[0])(*(torch.cat(fields, 0) for fields in zip(*states, strict=True)))


def split_state(state, sizes: list[int]) -> list[tuple[Tensor, ...]]:
    """The inverse of :func:`stack_states`: accepts a named or plain tuple, or a bare h tensor."""
    fields = (state,) if isinstance(state, Tensor) else tuple(state)
    total = sum(sizes)
    for field in fields:
        if not isinstance(field, Tensor) or field.dim() != 3 or field.shape[0] != total:
            got = tuple(field.shape) if isinstance(field, Tensor) else type(field).__name__
            raise ShapeError(
                f"state fields must be (L*K, B, H) with L*K = {total} (layers x directions), got {got}"
            )
    parts = [field.split(sizes, 0) for field in fields]
    return [tuple(p) for p in zip(*parts, strict=True)]


class Recurrent(nn.Module):
    """One recurrent layer: ``cell`` applied at every step of a batch-first sequence.

    A cell with a parallel form (``forward_sequence(x, state, lengths) -> (outputs, state)``, as the
    minimal cells have) runs the whole sequence in that one call. Otherwise the input projection of
    every step is one matrix product before the loop when the cell offers
    ``input_projection``/``recurrence`` (all classic built-in cells do); any other module that follows the
    cell contract ``forward(x_t (B, D), state) -> (y_t (B, H), state)`` with ``initial_state(B)``,
    ``state_size``, ``input_size`` and ``state_type`` (the NamedTuple class of its state, fields
    (B, H)) is stepped as it is. rnnkit's own RNNCell, LSTMCell and GRUCell (those classes exactly,
    float32/float64 on CPU) run the whole loop, forward and backward, in one C++ call each
    (:mod:`rnnkit.kernels`), built on first use; ``RNNKIT_NO_EXTENSION=1`` or a failed build keeps
    the pure-torch loop below.

    Args:
        cell: the cell to run.
        reverse: read each sequence from its last real step to its first (the backward half of a
            bidirectional layer); outputs are returned in the original time order.

    Shapes: x (B, T, D); state fields (1, B, H); lengths (B,) list or tensor, 1 <= length <= T.
    Padded steps leave the state as it was and give zero outputs.
    """

    num_states = 1

    def __init__(self, cell: nn.Module, reverse: bool = False) -> None:
        super().__init__()
        self.cell, self.reverse = cell, reverse
        self.input_size = cell.input_size
        self.output_size = cell.state_size

    def forward(self, x: Tensor, state: NamedTuple | None = None, lengths=None) -> RNNOutput:
        weight = next((p for p in self.cell.parameters() if p.is_floating_point()), None)
        dtype = x.dtype if weight is None else weight.dtype
        x = check_input(x, self.input_size, dtype)
        B, T, _ = x.shape
        lengths = check_lengths(lengths, B, T)
        if state is None:
            state = self.cell.initial_state(B)
        else:
            shape = (1, B, self.output_size)
            widths = getattr(self.cell, "state_widths", None)  # fields of their own widths (NTMCell)
            state = check_state(state, self.cell.state_type, shape, dtype, widths)
            state = type(state)(*(f[0] for f in state))  # (B, H)
        if self.reverse:
            x = reverse_padded(x, lengths)
        outputs, state = self._scan(x, state, lengths)
        if self.reverse:
            outputs = reverse_padded(outputs, lengths)
        return RNNOutput(outputs, type(state)(*(f.unsqueeze(0) for f in state)))

    def _scan(self, x: Tensor, state: NamedTuple, lengths: Tensor | None) -> tuple[Tensor, NamedTuple]:
        cell = self.cell
        if hasattr(cell, "forward_sequence"):  # outputs (B, T, H) zero on padded steps, state carried
            return cell.forward_sequence(x, state, lengths)
        if (compiled := compiled_scan(cell, x, state, lengths)) is not None:  # rnnkit's LSTM/GRU cell, in C++
            return compiled
        if hasattr(cell, "recurrence"):
            inputs = cell.input_projection(x).transpose(0, 1).unbind(0)  # T x (B, G*H)
            dropout_mask = cell.recurrent_dropout_mask(x.shape[0])

            def step(g, s):
                return cell.recurrence(g, s, dropout_mask)
        else:
            inputs, step = x.transpose(0, 1).unbind(0), cell  # T x (B, D)
        # unbind, never x[:, t]: indexing inside the loop makes autograd build O(T^2) zeros.
        masks = [None] * len(inputs)
        if lengths is not None:
            masks = lengths_to_mask(lengths, x.shape[1], x.device).T.unsqueeze(-1).unbind(0)  # T x (B, 1)
        outputs = []
        for g, m in zip(inputs, masks, strict=True):
            y, new = step(g, state)
            if m is not None:
                new = type(new)(*(torch.where(m, n, s) for n, s in zip(new, state, strict=True)))
                y = y * m
            outputs.append(y)
            state = new
        return torch.stack(outputs, 1), state  # (B, T, H)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """The cell's starting state with a leading layer axis: fields (1, B, H)."""
        return type(state := self.cell.initial_state(batch_size))(*(f.unsqueeze(0) for f in state))

    def extra_repr(self) -> str:
        return "reverse=True" if self.reverse else ""
