"""What every built-in cell shares: parameters in torch's layout, layer norm, dropout variants, init.

A cell does one time step. It splits the step in two so layers can hoist the input projection out of
the time loop: ``input_projection(x)`` works on any leading shape, ``recurrence(gx_t, state)`` does
the rest. ``forward(x_t, state)`` is the two in a row.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.cells.init import check_init, init_recurrent_weights
from rnnkit.checks import check_input, check_state
from rnnkit.errors import ConfigError


class RNNState(NamedTuple):
    """Hidden state of an Elman RNN or a GRU: h (B, H) in a cell, (L*K, B, H) in a layer."""

    h: Tensor


class LSTMState(NamedTuple):
    """Hidden and cell state of an LSTM: each (B, H) in a cell, (L*K, B, H) in a layer."""

    h: Tensor
    c: Tensor


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1), got {p}")
    return float(p)


class RecurrentCell(nn.Module):
    """Base of RNNCell, LSTMCell and GRUCell.

    Args:
        input_size: D, features per time step.
        hidden_size: H.
        bias: add ``bias_ih`` and ``bias_hh`` as torch does.
        layer_norm: normalise the input and recurrent pre-activations separately (Ba et al. 2016,
            eq. 20-22); the biases are added after the normalisation.
        init: "default" (torch's), "xavier"/"glorot", "he"/"kaiming", or "orthogonal".
        recurrent_dropout: variational dropout on h before W_hh, one mask per sequence
            (Gal & Ghahramani 2016, sec. 4).
        zoneout: probability that each unit keeps its previous value at a step (Krueger et al.
            2016); in eval mode the expectation is used.
        learn_initial_state: learn the state the sequence starts from instead of zeros.
    """

    num_gates: ClassVar[int]
    state_type: ClassVar[type[NamedTuple]] = RNNState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        layer_norm: bool = False,
        init: str = "default",
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.init = check_init(init)
        self.layer_norm = layer_norm
        self.recurrent_dropout = _check_probability("recurrent_dropout", recurrent_dropout)
        self.zoneout = _check_probability("zoneout", zoneout)
        self.learn_initial_state = learn_initial_state
        G = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(G)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(G)) if bias else None
        self.ln_ih = nn.LayerNorm(G, bias=False) if layer_norm else None
        self.ln_hh = nn.LayerNorm(G, bias=False) if layer_norm else None
        if learn_initial_state:
            for field in self.state_type._fields:
                self.register_parameter(f"initial_{field}", nn.Parameter(torch.zeros(hidden_size)))
        self.reset_parameters()

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def fusable(self) -> bool:
        """True when torch's fused kernels compute exactly this cell."""
        return not (self.layer_norm or self.recurrent_dropout or self.zoneout or self.learn_initial_state)

    def reset_parameters(self) -> None:
        biases = [b for b in (self.bias_ih, self.bias_hh) if b is not None]
        init_recurrent_weights(self.weight_ih, self.weight_hh, biases, self.num_gates, self.init)
        for module in self.children():
            module.reset_parameters()
        if self.learn_initial_state:
            for field in self.state_type._fields:
                nn.init.zeros_(getattr(self, f"initial_{field}"))

    def initial_state(self, batch_size: int) -> NamedTuple:
        """The state a sequence starts from: zeros, or the learned vectors; each field (B, H)."""
        w = self.weight_hh
        if self.learn_initial_state:
            fields = [getattr(self, f"initial_{f}").expand(batch_size, -1) for f in self.state_type._fields]
            return self.state_type(*fields)
        zeros = w.new_zeros(batch_size, self.hidden_size)
        return self.state_type(*([zeros] * len(self.state_type._fields)))

    def input_projection(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., G*H): W_ih x + b_ih, or LN(W_ih x) + b_ih with layer norm."""
        if self.ln_ih is None:
            return nn.functional.linear(x, self.weight_ih, self.bias_ih)
        gx = self.ln_ih(nn.functional.linear(x, self.weight_ih))
        return gx if self.bias_ih is None else gx + self.bias_ih

    def hidden_projection(self, h: Tensor) -> Tensor:
        """(B, H) -> (B, G*H): W_hh h + b_hh, or LN(W_hh h) + b_hh with layer norm."""
        if self.ln_hh is None:
            return nn.functional.linear(h, self.weight_hh, self.bias_hh)
        gh = self.ln_hh(nn.functional.linear(h, self.weight_hh))
        return gh if self.bias_hh is None else gh + self.bias_hh

    def update(self, gx: Tensor, gh: Tensor, state: NamedTuple) -> NamedTuple:
        """The elementwise gate maths on pre-activations (B, G*H); subclasses define it."""
        raise NotImplementedError

    def recurrent_dropout_mask(self, batch_size: int) -> Tensor | None:
        """One dropout mask (B, H) for a whole sequence, or None when off or in eval mode."""
        p = self.recurrent_dropout
        if not (self.training and p):
            return None
        keep = torch.empty(
            batch_size, self.hidden_size, dtype=self.weight_hh.dtype, device=self.weight_hh.device
        )
        return keep.bernoulli_(1 - p).div_(1 - p)

    def recurrence(
        self, gx: Tensor, state: NamedTuple, dropout_mask: Tensor | None = None
    ) -> tuple[Tensor, NamedTuple]:
        """One step from the input pre-activation gx (B, G*H): returns (y (B, H), new state)."""
        h = state[0] if dropout_mask is None else state[0] * dropout_mask
        new = self.update(gx, self.hidden_projection(h), state)
        if self.zoneout:
            new = self.state_type(*(self._zoneout(n, old) for n, old in zip(new, state, strict=True)))
        return new[0], new

    def _zoneout(self, new: Tensor, old: Tensor) -> Tensor:
        if not self.training:
            return torch.lerp(new, old, self.zoneout)
        keep = torch.empty_like(new).bernoulli_(self.zoneout)
        return torch.lerp(new, old, keep)

    def forward(self, x: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        """x (B, D), state fields (B, H) or None -> (y (B, H), new state).

        Each call draws its own recurrent-dropout mask. To keep one mask for a whole sequence when
        stepping by hand, draw ``mask = cell.recurrent_dropout_mask(B)`` once and call
        ``cell.recurrence(cell.input_projection(x_t), state, mask)`` at each step, as Recurrent does.
        """
        x = check_input(x, self.input_size, self.weight_ih.dtype, step=True)
        B = x.shape[0]
        if state is None:
            state = self.initial_state(B)
        else:
            state = check_state(state, self.state_type, (B, self.hidden_size), self.weight_hh.dtype)
        return self.recurrence(self.input_projection(x), state, self.recurrent_dropout_mask(B))

    def extra_repr(self) -> str:
        options = [f"{self.input_size}, {self.hidden_size}"]
        defaults = {
            "bias": True,
            "layer_norm": False,
            "init": "default",
            "recurrent_dropout": 0.0,
            "zoneout": 0.0,
            "learn_initial_state": False,
        }
        options += [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join(options)
