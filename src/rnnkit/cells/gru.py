"""GRU cell (Cho et al. 2014) in torch.nn.GRUCell's convention and gate order (r, z, n)."""

from __future__ import annotations

from rnnkit.cells.base import RecurrentCell, RNNState
from rnnkit.functional.steps import gru_update


class GRUCell(RecurrentCell):
    """r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) n + z h.

    The reset gate acts after the hidden projection, as in torch and cuDNN. ``weight_ih`` (3H, D),
    ``weight_hh`` (3H, H). Takes every option of :class:`RecurrentCell`.
    """

    num_gates = 3

    def update(self, gx, gh, state: RNNState) -> RNNState:
        return RNNState(gru_update(gx, gh, state.h))
