"""Memory encoders: stacked Recurrent(NTMCell) or Recurrent(DNCCell) layers with the interface of
rnnkit.LSTM (``cell: ntm``, ``cell: dnc``).

encoder = NTMEncoder(9, 100, memory_rows=128, memory_width=20)
out = encoder(x, lengths=lengths)          # x (B, T, 9) -> outputs (B, T, 100), state NTMState
trace = encoder.trace(x)                   # per layer, NTMState with fields (T, B, width): every step
encoder = DNCEncoder(9, 100, memory_rows=32, memory_width=8, read_heads=2)   # the same, DNCState
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.cells import DNCCell, DNCState, NTMCell, NTMState
from rnnkit.checks import check_input
from rnnkit.errors import ConfigError
from rnnkit.layers.recurrent import RNNOutput
from rnnkit.layers.stacked import Stacked

NTM_FIX = "set bidirectional: false (an NTM reads forward: its memory holds what it has read so far)"
DNC_FIX = "set bidirectional: false (a DNC reads forward: its memory holds what it has read so far)"


class MemoryEncoder(nn.Module):
    """What :class:`NTMEncoder` and :class:`DNCEncoder` share: ``num_layers`` memory cells
    (``cell_type``), each reading the outputs of the one below, with dropout between them.

    Inputs: x (B, T, D), state (a ``state_type``, fields (L, B, width)) or None, lengths (B,) or None.
    Outputs: RNNOutput(outputs (B, T, H), state with fields (L, B, width)); padded steps leave the
    memory as it was. There is no fused kernel: the layers loop over the cells.
    """

    cell_type: ClassVar[type[nn.Module]]
    state_type: ClassVar[type[NamedTuple]]
    cell_name: ClassVar[str]  # the config's cell name
    bidirectional_fix: ClassVar[str]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        memory: dict[str, int],
    ) -> None:
        super().__init__()
        if bidirectional:
            raise ConfigError(f"cell={self.cell_name!r} cannot run bidirectional: {self.bidirectional_fix}")
        self.stack = Stacked.of_cells(
            lambda size: self.cell_type(size, hidden_size, **memory),
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

    def forward(self, x: Tensor, state: NamedTuple | None = None, lengths=None) -> RNNOutput:
        return self.stack(x, state, lengths)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Every layer's starting state (the cell's ``initial_state``): fields (L, B, width)."""
        return self.stack.initial_state(batch_size)

    @torch.no_grad()
    def trace(self, x: Tensor) -> list[NamedTuple]:
        """Each layer's state after every step, its cell run step by step on ``x`` (B, T, D) of real
        steps only (no padding), as in eval mode (no dropout): one state per layer, fields
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
            traces.append(
                self.state_type(*(torch.stack(f) for f in zip(*states, strict=True)))
            )  # (T, B, width)
            x = torch.stack(outputs, 1)  # (B, T, H): the next layer's input
        return traces

    def extra_repr(self) -> str:
        memory = ", ".join(f"{k}={v}" for k, v in self.memory.items())
        layers = f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        return f"{self.input_size}, {self.hidden_size}{layers}, {memory}"


class NTMEncoder(MemoryEncoder):
    """``num_layers`` Neural Turing Machines (:class:`rnnkit.cells.NTMCell`), each reading the outputs
    of the one below, with dropout between them. Inputs and outputs as :class:`MemoryEncoder`, the
    state an :class:`NTMState`.

    Args:
        input_size: D. hidden_size: H, each controller's width and each layer's output width.
        num_layers: L. bidirectional: must be False (refused with the fix otherwise).
        dropout: on the outputs of every layer but the last, in training.
        memory_rows, memory_width, read_heads, write_heads, shift_range: each layer's memory
            (N rows of M entries), heads and largest shift, as :class:`NTMCell` takes them.
    """

    cell_type, state_type, cell_name, bidirectional_fix = NTMCell, NTMState, "ntm", NTM_FIX

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
        memory = dict(memory_rows=memory_rows, memory_width=memory_width, read_heads=read_heads)
        memory.update(write_heads=write_heads, shift_range=shift_range)
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, memory)


class DNCEncoder(MemoryEncoder):
    """``num_layers`` Differentiable Neural Computers (:class:`rnnkit.cells.DNCCell`), each reading the
    outputs of the one below, with dropout between them. Inputs and outputs as :class:`MemoryEncoder`,
    the state a :class:`DNCState`.

    Args:
        input_size: D. hidden_size: H, each controller's width and each layer's output width.
        num_layers: L. bidirectional: must be False (refused with the fix otherwise).
        dropout: on the outputs of every layer but the last, in training.
        memory_rows, memory_width, read_heads: each layer's memory (N rows of M entries) and read
            heads, as :class:`DNCCell` takes them; each has one write head.
    """

    cell_type, state_type, cell_name, bidirectional_fix = DNCCell, DNCState, "dnc", DNC_FIX

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
    ) -> None:
        memory = dict(memory_rows=memory_rows, memory_width=memory_width, read_heads=read_heads)
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, memory)
