"""Elman RNN cell (Elman 1990) with tanh or relu, torch.nn.RNNCell's parameters."""

from __future__ import annotations

from rnnkit.cells.base import RecurrentCell, RNNState
from rnnkit.errors import unknown_name
from rnnkit.functional.steps import NONLINEARITIES, elman_update


class RNNCell(RecurrentCell):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh), act in {"tanh", "relu"}.

    Takes every option of :class:`RecurrentCell`. ``weight_ih`` (H, D), ``weight_hh`` (H, H).

    Example:
        >>> cell = RNNCell(8, 16, nonlinearity="relu")
        >>> y, state = cell(torch.randn(4, 8))   # y (4, 16), state.h (4, 16)
    """

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", **options) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise unknown_name("nonlinearity", nonlinearity, NONLINEARITIES)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, **options)

    def update(self, gx, gh, state: RNNState) -> RNNState:
        return RNNState(elman_update(gx, gh, self.nonlinearity))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"
