"""Recurrent's time loop for rnnkit's own RNNCell, LSTMCell and GRUCell, run by the C++ loops.

Applies to ``type(cell)`` being one of those classes exactly (a subclass may change the maths, so it
keeps the generic loop) with float32/float64 CPU inputs; otherwise :func:`compiled_scan` returns None
and the caller runs the pure-torch loop. Random masks are drawn here in the order that loop draws
them (the recurrent-dropout mask, then per step one zoneout mask per state field: h, then c), so one
seed gives the same numbers on both paths.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.cells.base import RecurrentCell
from rnnkit.kernels import loops

_KINDS = {LSTMCell: "lstm", GRUCell: "gru"}  # RNNCell: "rnn_" + its nonlinearity


def compiled_scan(
    cell: nn.Module, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """x (B, T, D), state fields (B, H) -> (outputs (B, T, H), final state), or None if not applicable.

    The maths is the cell's own (``input_projection``, ``hidden_projection``, ``update``, zoneout),
    with the input projection and its layer norm run by the loop too. A layer norm's bias is added
    where the bias beside it is (the loop folds the two sums together where the cell does).
    """
    kind = f"rnn_{cell.nonlinearity}" if type(cell) is RNNCell else _KINDS.get(type(cell))
    if kind is None or not _plain_norms(cell) or not loops.available(kind, x):
        return None
    dropout_mask = cell.recurrent_dropout_mask(x.shape[0])  # (B, H) or None, drawn as the torch loop does
    zoneout_masks, zoneout = _zoneout(cell, x, fields=len(state))
    ln_ih, ln_hh, ln_c = cell.ln_ih, cell.ln_hh, getattr(cell, "ln_c", None)
    y, final = loops.time_loop(
        kind,
        x.transpose(0, 1),  # (T, B, D): the loop reads time-major
        cell.weight_ih,
        cell.weight_hh,
        tuple(state),
        _sum([cell.bias_ih, None if ln_ih is None else ln_ih.bias]),
        _sum([cell.bias_hh, None if ln_hh is None else ln_hh.bias]),
        *(None if n is None else n.weight for n in (ln_ih, ln_hh, ln_c)),
        None if ln_c is None else ln_c.bias,
        eps=tuple(1e-5 if n is None else n.eps for n in (ln_ih, ln_hh, ln_c)),
        dropout_mask=dropout_mask,
        zoneout_masks=zoneout_masks,
        zoneout=zoneout,
        lengths=lengths,
    )
    return y, cell.state_type(*final)


def _zoneout(cell: RecurrentCell, x: Tensor, fields: int) -> tuple[Tensor | None, float]:
    """Training: keep masks (T, fields, B, H), one (B, H) draw per field per step as the torch loop
    draws them, and probability 0. Eval: no masks and the probability (its expectation)."""
    if not (cell.zoneout and cell.training):
        return None, cell.zoneout
    B, T, _ = x.shape
    masks = cell.weight_hh.new_empty(T, fields, B, cell.hidden_size)
    for keep in masks.view(T * fields, B, -1).unbind(0):  # step by step, field by field
        keep.bernoulli_(cell.zoneout)
    return masks, 0.0


def _plain_norms(cell: RecurrentCell) -> bool:
    """The cell's layer norms are torch's LayerNorm over the last axis with a weight, as the loops have."""
    H, G = cell.hidden_size, cell.num_gates * cell.hidden_size
    for norm, size in ((cell.ln_ih, G), (cell.ln_hh, G), (getattr(cell, "ln_c", None), H)):
        if norm is not None and (
            type(norm) is not nn.LayerNorm or norm.weight is None or tuple(norm.normalized_shape) != (size,)
        ):
            return False
    return True


def _sum(tensors: list[Tensor | None]) -> Tensor | None:
    """The sum of the tensors given (None where there are none)."""
    tensors = [t for t in tensors if t is not None]
    return None if not tensors else tensors[0] if len(tensors) == 1 else torch.stack(tensors).sum(0)
