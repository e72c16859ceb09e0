"""Recurrent's time loop for rnnkit's own LSTMCell, run by the C++ loop of functional/lstm_loop.

Applies to ``type(cell) is LSTMCell`` exactly (a subclass may change the maths, so it keeps the
generic loop) with float32/float64 CPU inputs; otherwise :func:`compiled_scan` returns None and the
caller runs the pure-torch loop. Random masks are drawn here in the order that loop draws them
(the recurrent-dropout mask, then per step zoneout for h then c), so one seed gives the same numbers
on both paths.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells import LSTMCell
from rnnkit.cells.base import LSTMState
from rnnkit.functional.lstm_loop import available, lstm_loop


def compiled_scan(
    cell: nn.Module, x: Tensor, state: LSTMState, lengths: Tensor | None
) -> tuple[Tensor, LSTMState] | None:
    """x (B, T, D), state fields (B, H) -> (outputs (B, T, H), final state), or None if not applicable.

    The maths is the cell's own (``input_projection``, ``hidden_projection``, ``update``, zoneout),
    with the input projection and its layer norm run by the loop too, and every bias added once per
    step as one sum: the biases all add to the gate pre-activations after the normalisations.
    """
    if type(cell) is not LSTMCell or not _plain_norms(cell) or not available(x):
        return None
    B, T, _ = x.shape
    H = cell.hidden_size
    dropout_mask = cell.recurrent_dropout_mask(B)  # (B, H) or None, drawn where the torch loop draws it
    zoneout_masks, zoneout = None, 0.0
    if cell.zoneout and cell.training:
        zoneout_masks = cell.weight_hh.new_empty(T, 2, B, H)
        for keep in zoneout_masks.unbind(0):  # (2, B, H): h then c, one (B, H) draw each as the loop does
            keep[0].bernoulli_(cell.zoneout)
            keep[1].bernoulli_(cell.zoneout)
    elif cell.zoneout:
        zoneout = cell.zoneout  # eval: the expectation
    norms = (cell.ln_ih, cell.ln_hh, cell.ln_c)
    biases = [cell.bias_ih, cell.bias_hh, *(n.bias for n in norms[:2] if n is not None)]
    y, h, c = lstm_loop(
        x.transpose(0, 1),  # (T, B, D): the loop reads time-major
        cell.weight_ih,
        state.h,
        state.c,
        cell.weight_hh,
        _sum([b for b in biases if b is not None]),
        *(None if n is None else n.weight for n in norms),
        None if cell.ln_c is None else cell.ln_c.bias,
        eps=tuple(1e-5 if n is None else n.eps for n in norms),
        dropout_mask=dropout_mask,
        zoneout_masks=zoneout_masks,
        zoneout=zoneout,
        lengths=lengths,
    )
    return y, LSTMState(h, c)


def _plain_norms(cell: LSTMCell) -> bool:
    """The cell's layer norms are torch's LayerNorm over the last axis with a weight, as the loop has."""
    H = cell.hidden_size
    for norm, size in ((cell.ln_ih, 4 * H), (cell.ln_hh, 4 * H), (cell.ln_c, H)):
        if norm is not None and (
            type(norm) is not nn.LayerNorm or norm.weight is None or tuple(norm.normalized_shape) != (size,)
        ):
            return False
    return True


def _sum(tensors: list[Tensor]) -> Tensor | None:
    return None if not tensors else tensors[0] if len(tensors) == 1 else torch.stack(tensors).sum(0)
