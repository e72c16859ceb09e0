"""One time step of each classic recurrence: the spec every fast path is tested against.

Each recurrence is split in two: ``*_update`` takes the input and hidden pre-activations
``gx = W_ih x + b_ih`` and ``gh = W_hh h + b_hh`` (B, G*H) and does the elementwise gate maths;
``*_step`` builds those projections from raw weights and calls it. Cells reuse ``*_update`` so the
layer-normalised variants differ from the plain ones only in how ``gx`` and ``gh`` are made.

Gate order and conventions are torch.nn's: LSTM (i, f, g, o), GRU (r, z, n). The minimal RNNs of
Feng et al. 2024 (minGRU, minLSTM) have no hidden projection: their steps take the raw weights only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.errors import unknown_name

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def elman_update(gx: Tensor, gh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman (1990): h' = act(gx + gh). Returns h' (B, H)."""
    try:
        act = NONLINEARITIES[nonlinearity]
    except KeyError:
        raise unknown_name("nonlinearity", nonlinearity, NONLINEARITIES) from None
    return act(gx + gh)


def lstm_update(
    gx: Tensor, gh: Tensor, c: Tensor, cell_norm: torch.nn.Module | None = None
) -> tuple[Tensor, Tensor]:
    """LSTM (Hochreiter & Schmidhuber 1997, with forget gate) on pre-activations (B, 4H).

    i, f, g, o = split(gx + gh);  c' = sigmoid(f) c + sigmoid(i) tanh(g);  h' = sigmoid(o) tanh(c').
    With ``cell_norm`` (Ba et al. 2016, eq. 22) the output reads tanh(LN(c')). Returns (h', c').
    """
    i, f, g, o = (gx + gh).chunk(4, dim=-1)  # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    c_out = c if cell_norm is None else cell_norm(c)
    return torch.sigmoid(o) * torch.tanh(c_out), c


def gru_update(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """GRU (Cho et al. 2014) on pre-activations (B, 3H), in torch.nn.GRU's convention.

    r = sigmoid(gx_r + gh_r);  z = sigmoid(gx_z + gh_z);  n = tanh(gx_n + r * gh_n);
    h' = (1 - z) n + z h.  The reset gate multiplies the hidden projection *after* the matrix
    product (and its bias b_hn), as torch and cuDNN do, not h before it as in the paper's eq. 5.
    """
    xr, xz, xn = gx.chunk(3, dim=-1)  # each (B, H)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return torch.lerp(n, h, z)


def elman_step(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One Elman step: x (B, D), h (B, H) -> h' (B, H)."""
    return elman_update(F.linear(x, weight_ih, bias_ih), F.linear(h, weight_hh, bias_hh), nonlinearity)


def lstm_step(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step: x (B, D), state (h, c) each (B, H) -> (h', c')."""
    h, c = state
    return lstm_update(F.linear(x, weight_ih, bias_ih), F.linear(h, weight_hh, bias_hh), c)


def gru_step(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step: x (B, D), h (B, H) -> h' (B, H)."""
    return gru_update(F.linear(x, weight_ih, bias_ih), F.linear(h, weight_hh, bias_hh), h)


def positive_activation(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise: continuous, increasing and always > 0.

    Feng et al. 2024, appendix B.3: replaces the identity on the minimal RNNs' candidate state so that
    every h stays positive and the recurrence can run in log space.
    """
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_positive_activation(x: Tensor) -> Tensor:
    """log g(x) without forming g: log(x + 0.5) for x >= 0, -softplus(-x) = log sigmoid(x) otherwise."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def mingru_step(
    x: Tensor,
    h: Tensor,
    weight_z: Tensor,
    bias_z: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
) -> Tensor:
    """One minGRU step (Feng et al. 2024, sec. 3.1; g from appendix B.3): x (B, D), h (B, H) -> h'.

    z = sigmoid(W_z x + b_z);  h~ = g(W_h x + b_h);  h' = (1 - z) h + z h~.
    The gates read x only, so h' = a h + b with a = 1 - z and b = z h~ known for every step at once.
    """
    z = torch.sigmoid(F.linear(x, weight_z, bias_z))
    h_tilde = positive_activation(F.linear(x, weight_h, bias_h))
    return (1 - z) * h + z * h_tilde


def minlstm_step(
    x: Tensor,
    h: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_i: Tensor,
    bias_i: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
) -> Tensor:
    """One minLSTM step (Feng et al. 2024, sec. 3.2; g from appendix B.3): x (B, D), h (B, H) -> h'.

    f = sigmoid(W_f x + b_f);  i = sigmoid(W_i x + b_i);  h~ = g(W_h x + b_h);
    f' = f / (f + i);  i' = i / (f + i);  h' = f' h + i' h~  (sec. 3.2.3: the normalised gates keep
    the scale of h independent of time). No cell state and no output gate: h' = a h + b again.
    """
    f = torch.sigmoid(F.linear(x, weight_f, bias_f))
    i = torch.sigmoid(F.linear(x, weight_i, bias_i))
    h_tilde = positive_activation(F.linear(x, weight_h, bias_h))
    return f / (f + i) * h + i / (f + i) * h_tilde
