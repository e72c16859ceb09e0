"""A copy of a model whose time loops torch.export can capture with a dynamic time axis.

rnnkit's layers run time three ways: torch's fused kernels (RNN/LSTM/GRU without extra options; with
``lengths`` they pack the batch, and PackedSequence's ONNX export is broken upstream), the C++ loops
of :mod:`rnnkit.kernels` (opaque to tracing), or a Python loop over the cell (traced, it unrolls into
T copies of the step, fixing T). :func:`exportable` deep-copies the model, sets every RNN/LSTM/GRU
layer to its cell path and replaces each :class:`~rnnkit.layers.Recurrent` layer's time loop by
``torch._higher_order_ops.scan`` over the same cell maths, which the ONNX exporter writes as one ONNX
``Scan`` whose trip count is the input's T. Lengths are masks, as in Recurrent's own loop: a padded
step keeps the state and gives a zero output; the backward direction reverses each sequence within
its own length before the scan (Recurrent does that around ``_scan``), so it starts at each
sequence's last real step. The original model is left untouched: it is the eager reference the
export is checked against.
"""

from __future__ import annotations

import copy
import types
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers import GRU, LSTM, RNN, Recurrent


def exportable(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with scan-based time loops (module docs)."""
    twin = copy.deepcopy(model).eval()
    for module in twin.modules():
        if isinstance(module, (RNN, LSTM, GRU)):  # the same weights, looped over the cells
            module.path = "cell"
        if isinstance(module, Recurrent):
            module._scan = types.MethodType(_scanned, module)
    return twin


def _scanned(layer: Recurrent, x: Tensor, state: NamedTuple, lengths: Tensor | None):
    """Recurrent._scan as one scan: x (B, T, D), state fields (B, H) -> (outputs (B, T, H), state)."""
    from torch._higher_order_ops.scan import scan  # a prototype API of torch; only export needs it

    cell, (B, T, _) = layer.cell, x.shape
    if lengths is None:
        real = torch.ones(B, T, 1, dtype=torch.bool, device=x.device)  # (B, T, 1)
    else:
        real = lengths_to_mask(lengths, T, x.device).unsqueeze(-1)  # (B, T, 1)
    if hasattr(cell, "forward_sequence"):  # minimal cells: h_t = a_t h_(t-1) + b_t (Feng et al. 2024)
        a, b = cell.coefficients(nn.functional.linear(x, cell.weight_ih, cell.bias_ih))  # (B, T, H) each

        def step(carry, inputs):
            a_t, b_t, m_t = inputs  # (B, H), (B, H), (B, 1)
            h = torch.where(m_t, torch.addcmul(b_t, a_t, carry[0]), carry[0])  # (B, H)
            return (h,), (h * m_t).clone()

        steps = (a.transpose(0, 1), b.transpose(0, 1), real.transpose(0, 1))  # each (T, B, ...)
    else:  # rnnkit's RNN/LSTM/GRU cells, eval mode: no recurrent-dropout mask, zoneout its expectation
        gx = cell.input_projection(x)  # (B, T, G*H): every step's input projection at once

        def step(carry, inputs):
            g_t, m_t = inputs  # (B, G*H), (B, 1)
            old = cell.state_type(*carry)
            y, new = cell.recurrence(g_t, old)
            kept = tuple(torch.where(m_t, n, o) for n, o in zip(new, old, strict=True))
            return kept, (y * m_t).clone()

        steps = (gx.transpose(0, 1), real.transpose(0, 1))  # (T, B, G*H), (T, B, 1)
    start = tuple(f.clone() for f in state)  # scan refuses carries that alias each other (LSTM zeros)
    final, outputs = scan(step, start, steps)  # outputs (T, B, H)
    return outputs.transpose(0, 1), type(state)(*final)  # (B, T, H)
