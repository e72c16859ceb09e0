"""A copy of a model whose time loops torch.export can capture with a dynamic time axis.

rnnkit's layers run time three ways: torch's fused kernels (RNN/LSTM/GRU without extra options; with
``lengths`` they pack the batch, and PackedSequence's ONNX export is broken upstream), the C++ loops
of :mod:`rnnkit.kernels` (opaque to tracing), or a Python loop over the cell (traced, it unrolls into
T copies of the step, fixing T). :func:`exportable` deep-copies the model, sets every RNN/LSTM/GRU
layer to its cell path and replaces each :class:`~rnnkit.layers.Recurrent` layer's time loop by
torch's ``scan`` higher-order operator over the same cell maths, which the ONNX exporter writes as one
ONNX ``Scan`` whose trip count is the input's T. Lengths are masks, as in Recurrent's own loop: a
padded step keeps the state and gives a zero output; the backward direction reverses each sequence
within its own length before the scan (Recurrent does that around ``_scan``), so it starts at each
sequence's last real step. The original model is left untouched: it is the eager reference the
export is checked against.

The operator (``scan_op``) is called directly, with the cell's weights as explicit inputs: the
``torch._higher_order_ops.scan.scan`` wrapper compiles each step function with dynamo to lift the
tensors it closes over, which was more than half of ``torch.export``'s time on rnnkit's task models.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
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
    from torch._higher_order_ops.scan import scan_op  # a prototype API of torch; only export needs it

    cell, (B, T, _) = layer.cell, x.shape
    if lengths is None:
        real = torch.ones(B, T, 1, dtype=torch.bool, device=x.device)  # (B, T, 1)
    else:
        real = lengths_to_mask(lengths, T, x.device).unsqueeze(-1)  # (B, T, 1)
    start = [f.clone() for f in state]  # scan refuses carries that alias each other (LSTM zeros)
    if hasattr(cell, "forward_sequence"):  # minimal cells: h_t = a_t h_(t-1) + b_t (Feng et al. 2024)
        a, b = cell.coefficients(nn.functional.linear(x, cell.weight_ih, cell.bias_ih))  # (B, T, H) each
        step, weights = _minimal_step, ()
        steps = [a.transpose(0, 1), b.transpose(0, 1), real.transpose(0, 1)]  # each (T, B, ...)
    else:  # rnnkit's RNN/LSTM/GRU cells, eval mode: no recurrent-dropout mask, zoneout its expectation
        step, weights = _cell_step(cell, len(start))
        steps = [cell.input_projection(x).transpose(0, 1), real.transpose(0, 1)]  # (T, B, G*H), (T, B, 1)
    *final, outputs = scan_op(step, start, steps, additional_inputs=weights)  # outputs (T, B, H)
    return outputs.transpose(0, 1), type(state)(*final)  # (B, T, H)


def _minimal_step(h: Tensor, a_t: Tensor, b_t: Tensor, m_t: Tensor) -> list[Tensor]:
    """h (B, H), a_t (B, H), b_t (B, H), m_t (B, 1) -> [h', output], h kept on padded steps."""
    h = torch.where(m_t, torch.addcmul(b_t, a_t, h), h)  # (B, H)
    return [h, (h * m_t).clone()]


class _Recurrence(nn.Module):
    """One masked cell step as a module, so its weights can be passed in (torch.func.functional_call)."""

    def __init__(self, cell: nn.Module, fields: int) -> None:
        super().__init__()
        self.cell, self.fields = cell, fields

    def forward(self, *args: Tensor) -> list[Tensor]:
        carry, (g_t, m_t) = args[: self.fields], args[self.fields :]  # fields (B, H), (B, G*H), (B, 1)
        old = self.cell.state_type(*carry)
        y, new = self.cell.recurrence(g_t, old)
        kept = [torch.where(m_t, n, o) for n, o in zip(new, old, strict=True)]
        return [*kept, (y * m_t).clone()]


def _cell_step(cell: nn.Module, fields: int) -> tuple[Callable[..., list[Tensor]], tuple[Tensor, ...]]:
    """A non-minimal cell's masked step and the tensors it reads, which the scan passes in as
    ``additional_inputs``: the scan operator's step function may not close over tensors."""
    module = _Recurrence(cell, fields)
    named = dict(module.named_parameters()) | dict(module.named_buffers())

    def step(*args: Tensor) -> list[Tensor]:
        split = len(args) - len(named)  # carry and this step's inputs, then the weights
        weights = dict(zip(named, args[split:], strict=True))
        return torch.func.functional_call(module, weights, args[:split])

    return step, tuple(named.values())
