"""One time step of each classic recurrence: the spec every fast path is tested against.

Each recurrence is split in two: ``*_update`` takes the input and hidden pre-activations
``gx = W_ih x + b_ih`` and ``gh = W_hh h + b_hh`` (B, G*H) and does the elementwise gate maths;
``*_step`` builds those projections from raw weights and calls it. Cells reuse ``*_update`` so the
layer-normalised variants differ from the plain ones only in how ``gx`` and ``gh`` are made.

Gate order and conventions are torch.nn's: LSTM (i, f, g, o), GRU (r, z, n).
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
