"""LSTM cell in torch.nn.LSTMCell's gate order (i, f, g, o), with a forget-gate bias of 1."""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.cells.base import LSTMState, RecurrentCell
from rnnkit.functional.steps import lstm_update


class LSTMCell(RecurrentCell):
    """c' = sigmoid(f) c + sigmoid(i) tanh(g);  h' = sigmoid(o) tanh(c').

    Args:
        forget_bias: value the forget gate's bias starts at (Jozefowicz et al. 2015 advise 1);
            ``None`` keeps what the initialiser gave, as torch.nn.LSTMCell does.
        **options: every option of :class:`RecurrentCell`. With ``layer_norm`` the cell state is
            normalised too before the output tanh (Ba et al. 2016, eq. 22).

    ``weight_ih`` (4H, D), ``weight_hh`` (4H, H); state is ``LSTMState(h, c)``.
    """

    num_gates = 4
    state_type = LSTMState

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float | None = 1.0, **options) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, **options)
        self.ln_c = nn.LayerNorm(hidden_size) if self.layer_norm else None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.bias_ih is not None:
            H = self.hidden_size
            with torch.no_grad():  # the two biases add up: put the whole value on one
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def update(self, gx, gh, state: LSTMState) -> LSTMState:
        return LSTMState(*lstm_update(gx, gh, state.c, self.ln_c))

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.forget_bias == 1.0 else f", forget_bias={self.forget_bias}")
