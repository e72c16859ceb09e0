"""NTMEncoder: stacked Recurrent(NTMCell) layers with the interface of rnnkit.LSTM (``cell: ntm``).

encoder = NTMEncoder(9, 100, memory_rows=128, memory_width=20)
out = encoder(x, lengths=lengths)          # x (B, T, 9) -> outputs (B, T, 100), state NTMState
trace = encoder.trace(x)                   # per layer, NTMState with fields (T, B, width): every step
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells import NTMCell, NTMState
from rnnkit.checks import check_input
from rnnkit.errors import ConfigError
from rnnkit.layers.recurrent import RNNOutput
from rnnkit.layers.stacked import Stacked

NTM_FIX = "set bidirectional: false (an NTM reads forward: its memory holds what it has read so far)"


class NTMEncoder(nn.Module):
    """``num_layers`` Neural Turing Machines (:class:`rnnkit.cells.NTMCell`), each reading the outputs
    of the one below, with dropout between them.

    Args:
        input_size: D. hidden_size: H, each controller's width and each layer's output width.
        num_layers: L. bidirectional: must be False (refused with the fix otherwise).
        dropout: on the outputs of every layer but the last, in training.
        memory_rows, memory_width, read_heads, write_heads, shift_range: each layer's memory
            (N rows of M entries), heads and largest shift, as :class:`NTMCell` takes them.

    Inputs: x (B, T, D), state (an NTMState, fields (L, B, width)) or None, lengths (B,) or None.
    Outputs: RNNOutput(outputs (B, T, H), state NTMState with fields (L, B, width)); padded steps
    leave the memory as it was. There is no fused kernel: the layers loop over the cells.
    """

    state_type = NTMState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        memory_rows: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
    ) -> None:
        super().__init__()
        if bidirectional:
            raise ConfigError(f"cell='ntm' cannot run bidirectional: {NTM_FIX}")
        memory = dict(memory_rows=memory_rows, memory_width=memory_width, read_heads=read_heads)
        memory.update(write_heads=write_heads, shift_range=shift_range)
        self.stack = Stacked.of_cells(
            lambda size: NTMCell(size, hidden_size, **memory),
            input_size,
            hidden_size,
            num_layers,
            False,
            dropout,
        )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.memory = False, dropout, memory
        self.output_size, self.num_states = hidden_size, num_layers
        self.cells = [layer.cell for layer in self.stack.layers]

    def forward(self, x: Tensor, state: NTMState | None = None, lengths=None) -> RNNOutput:
        return self.stack(x, state, lengths)

    def initial_state(self, batch_size: int) -> NTMState:
        """Every layer's starting state (:meth:`NTMCell.initial_state`): fields (L, B, width)."""
        return self.stack.initial_state(batch_size)

    @torch.no_grad()
    def trace(self, x: Tensor) -> list[NTMState]:
        """Each layer's state after every step, its cell run step by step on ``x`` (B, T, D) of real
        steps only (no padding), as in eval mode (no dropout): one NTMState per layer, fields
        (T, B, width). ``read_weights`` (T, B, R*N) and ``write_weights`` (T, B, W*N) show where
        the heads looked; ``memory.view(T, B, N, M)`` what the memory held."""
        x = check_input(x, self.input_size, self.cells[0].output.weight.dtype)
        traces = []
        for cell in self.cells:
            state, outputs, states = cell.initial_state(x.shape[0]), [], []
            for x_t in x.unbind(1):  # T x (B, D)
                y, state = cell(x_t, state)
                outputs.append(y)
                states.append(state)
            traces.append(NTMState(*(torch.stack(f) for f in zip(*states, strict=True))))  # (T, B, width)
            x = torch.stack(outputs, 1)  # (B, T, H): the next layer's input
        return traces

    def extra_repr(self) -> str:
        memory = ", ".join(f"{k}={v}" for k, v in self.memory.items())
        layers = f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        return f"{self.input_size}, {self.hidden_size}{layers}, {memory}"
