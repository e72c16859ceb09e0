"""minGRU and minLSTM cells (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read x only.

Both recurrences are h_t = a_t * h_{t-1} + b_t with a and b computed from x alone, so a whole sequence
is one matrix product followed by a scan (sequential or log-space parallel, functional/scan.py). Both
reduce to one mixing logit m and a candidate pre-activation k per unit: with w = sigmoid(m),
a = 1 - w, b = w * g(k), and in log space log a = logsigmoid(-m), log b = logsigmoid(m) + log g(k),
which never divides and never rounds a gate to 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.cells.base import RNNState
from rnnkit.checks import check_input, check_lengths, check_state
from rnnkit.errors import ConfigError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.functional.scan import check_scan, log_space_scan, loggable, resolve_scan, sequential_scan
from rnnkit.functional.steps import log_positive_activation


class _PositiveActivation(torch.autograd.Function):
    """g(k) of functional.steps.positive_activation in half its full-size passes (forward and backward
    1.6-2.5x faster than torch.where's on CPU). g = max(k + 0.5, sigmoid(k)) is the same piecewise
    function, and its slope reads off g alone: 1 where g >= 0.5 (k >= 0), g (1 - g) below."""

    @staticmethod
    def forward(ctx, k: Tensor) -> Tensor:
        g = torch.maximum(k + 0.5, torch.sigmoid(k))
        ctx.save_for_backward(g)
        return g

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (g,) = ctx.saved_tensors
        above = (g >= 0.5).to(grad.dtype)  # 1 where k >= 0
        return torch.lerp(torch.ops.aten.sigmoid_backward(grad, g), grad, above)


class MinimalCell(nn.Module):
    """Base of MinGRUCell and MinLSTMCell: one fused input projection, no recurrent weights.

    Args:
        input_size: D.  hidden_size: H.
        bias: learn ``bias_ih``.
        scan: how ``forward_sequence`` runs time: "sequential" (an elementwise loop), "parallel"
            (the log-space scan), or "auto" (parallel on a GPU, sequential on CPU, where it is faster).

    Parameters: ``weight_ih`` (G*H, D) and ``bias_ih`` (G*H), initialised U(-1/sqrt(H), 1/sqrt(H)) as
    torch.nn's recurrent layers are (the paper's pseudocode uses linear layers, whose torch default
    is U(-1/sqrt(D), 1/sqrt(D))). The step form and the sequential scan have hand-written backward
    passes: first derivatives only (the parallel scan is plain autograd).
    """

    num_gates: ClassVar[int]
    state_type: ClassVar[type[RNNState]] = RNNState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, scan: str = "auto") -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.scan = check_scan(scan)
        self.weight_ih = nn.Parameter(torch.empty(self.num_gates * hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.empty(self.num_gates * hidden_size)) if bias else None
        self.reset_parameters()

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for w in (self.weight_ih, self.bias_ih):
            if w is not None:
                w.uniform_(-bound, bound)

    def initial_state(self, batch_size: int) -> RNNState:
        """Zeros (B, H)."""
        return RNNState(self.weight_ih.new_zeros(batch_size, self.hidden_size))

    def mix_and_candidate(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-activations (..., G*H) -> the mixing logit m and the candidate's pre-activation k."""
        raise NotImplementedError

    def coefficients(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        """(..., G*H) -> a = 1 - w, b = w g(k) with w = sigmoid(m), each (..., H)."""
        m, k = self.mix_and_candidate(gx)
        w = torch.sigmoid(m)
        return 1 - w, w * _PositiveActivation.apply(k)

    def log_coefficients(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        """(..., G*H) -> log a, log b, each (..., H), computed without taking a log of a or b."""
        m, k = self.mix_and_candidate(gx)
        return F.logsigmoid(-m), F.logsigmoid(m) + log_positive_activation(k)

    def _h0(self, state, batch_size: int) -> Tensor:
        if state is None:
            return self.initial_state(batch_size).h
        shape = (batch_size, self.hidden_size)
        return check_state(state, self.state_type, shape, self.weight_ih.dtype).h

    def forward(self, x: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """One step: x (B, D), state RNNState(h (B, H)) or None -> (h' (B, H), RNNState(h'))."""
        x = check_input(x, self.input_size, self.weight_ih.dtype, step=True)
        a, b = self.coefficients(F.linear(x, self.weight_ih, self.bias_ih))  # each (B, H)
        h = torch.addcmul(b, a, self._h0(state, x.shape[0]))
        return h, RNNState(h)

    def forward_sequence(
        self, x: Tensor, state: RNNState | None = None, lengths=None
    ) -> tuple[Tensor, RNNState]:
        """All steps at once: x (B, T, D), state RNNState(h (B, H)) or None, lengths (B,) or None.

        Returns (outputs (B, T, H), RNNState(h (B, H))). Padded steps (t >= length) get a = 1, b = 0,
        so the state passes them unchanged; outputs there are zero. The parallel scan falls back to
        the sequential one for a given state with negative entries (log h0 does not exist), or with
        zeros that need a gradient (d log h0 / d h0 is infinite there).
        """
        x = check_input(x, self.input_size, self.weight_ih.dtype)
        B, T, _ = x.shape
        lengths = check_lengths(lengths, B, T)
        h0 = self._h0(state, B)
        gx = F.linear(x, self.weight_ih, self.bias_ih)  # (B, T, G*H): one product for every step
        padded = None if lengths is None else ~lengths_to_mask(lengths, T, x.device)[..., None]  # (B, T, 1)
        parallel = resolve_scan(self.scan, x.device) == "parallel" and (state is None or loggable(h0))
        if parallel:
            log_a, log_b = self.log_coefficients(gx)  # each (B, T, H)
            if padded is not None:
                log_a, log_b = log_a.masked_fill(padded, 0.0), log_b.masked_fill(padded, -math.inf)
            h = log_space_scan(log_a, log_b, h0.log())
        else:
            a, b = self.coefficients(gx)  # each (B, T, H)
            if padded is not None:
                a, b = a.masked_fill(padded, 1.0), b.masked_fill(padded, 0.0)
            h = sequential_scan(a, b, h0)
        outputs = h if padded is None else h.masked_fill(padded, 0.0)
        return outputs, RNNState(h[:, -1].clone())  # a copy: the state must not pin all of h

    def extra_repr(self) -> str:
        bias = "" if self.bias else ", bias=False"
        return f"{self.input_size}, {self.hidden_size}{bias}, scan={self.scan!r}"


class MinGRUCell(MinimalCell):
    """minGRU (Feng et al. 2024, sec. 3.1; g from appendix B.3); gate order (z, h~).

    z = sigmoid(W_z x + b_z);  h~ = g(W_h x + b_h);  h' = (1 - z) h + z h~,
    with g(x) = x + 0.5 for x >= 0 and sigmoid(x) below, which keeps h > 0. ``weight_ih`` (2H, D).
    The reference is :func:`rnnkit.functional.steps.mingru_step`.

    Example:
        >>> cell = MinGRUCell(8, 16)
        >>> y, state = cell(torch.randn(4, 8))                         # one step: (4, 16)
        >>> ys, state = cell.forward_sequence(torch.randn(4, 10, 8))   # all steps: (4, 10, 16)
    """

    num_gates = 2

    def mix_and_candidate(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = gx.chunk(2, -1)  # each (..., H); a = 1 - z = sigmoid(-k_z)
        return k_z, k_h


class MinLSTMCell(MinimalCell):
    """minLSTM (Feng et al. 2024, sec. 3.2; g from appendix B.3); gate order (f, i, h~).

    f = sigmoid(W_f x + b_f);  i = sigmoid(W_i x + b_i);  h~ = g(W_h x + b_h);
    h' = f / (f + i) * h + i / (f + i) * h~.  ``weight_ih`` (3H, D); no cell state, no output gate.
    The reference is :func:`rnnkit.functional.steps.minlstm_step`.
    """

    num_gates = 3

    def mix_and_candidate(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = gx.chunk(3, -1)  # each (..., H)
        # f / (f + i) = sigmoid(log f - log i) = sigmoid(-m), with log sigmoid(k) = -softplus(-k)
        return F.softplus(-k_f) - F.softplus(-k_i), k_h
