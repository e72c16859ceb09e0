"""rnnkit.MinGRU and MinLSTM: stacks of the minimal cells (Feng et al. 2024), run a sequence at a time.

Each layer is a Recurrent over a minimal cell, which calls the cell's ``forward_sequence``: one matrix
product for all steps, then a scan. So lengths, the reverse direction, state carry and stacking are
those of every other rnnkit layer.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from rnnkit.cells.base import RNNState
from rnnkit.cells.minimal import MinGRUCell, MinimalCell, MinLSTMCell
from rnnkit.checks import check_input
from rnnkit.functional.scan import check_scan
from rnnkit.layers.recurrent import RNNOutput
from rnnkit.layers.stacked import Stacked


class _MinimalRNN(nn.Module):
    cell_class: ClassVar[type[MinimalCell]]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        bias: bool = True,
        scan: str = "auto",
        residual: bool = False,
    ) -> None:
        super().__init__()
        check_scan(scan)
        K = 2 if bidirectional else 1
        self.stack = Stacked.of_cells(
            lambda size: self.cell_class(size, hidden_size, bias, scan),
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            dropout,
            residual,
        )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.bias, self.residual = bidirectional, dropout, bias, residual
        self.output_size = K * hidden_size
        self.num_states = num_layers * K
        self.state_type = RNNState
        self.cells = [m for m in self.stack.modules() if isinstance(m, MinimalCell)]

    @property
    def scan(self) -> str:
        """The cells' scan ("auto", "sequential" or "parallel"); setting it sets every cell's."""
        return self.cells[0].scan

    @scan.setter
    def scan(self, method: str) -> None:
        check_scan(method)
        for cell in self.cells:
            cell.scan = method

    def initial_state(self, batch_size: int) -> RNNState:
        """Zeros: RNNState(h (L*K, B, H))."""
        return self.stack.initial_state(batch_size)

    def forward(self, x: Tensor, state: RNNState | Tensor | None = None, lengths=None) -> RNNOutput:
        """x (B, T, D); state RNNState(h (L*K, B, H)) or a bare h, or None; lengths (B,) or None.

        Returns ``RNNOutput(outputs (B, T, K*H), RNNState(h (L*K, B, H)))``, outputs zero on padded
        steps, states in torch's order (layer 0 forward, layer 0 backward, layer 1 forward, ...).
        """
        check_input(x, self.input_size, self.cells[0].weight_ih.dtype)
        return self.stack(x, state, lengths)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        flags = (("bidirectional", self.bidirectional), ("dropout", self.dropout))
        parts += [f"{k}={v!r}" for k, v in flags if v]
        parts += [p for p, on in (("bias=False", not self.bias), ("residual=True", self.residual)) if on]
        return ", ".join([*parts, f"scan={self.scan!r}"])


class MinGRU(_MinimalRNN):
    """minGRU layers (Feng et al. 2024, sec. 3.1), batch first, with the options of torch.nn.GRU's shape.

    Each unit: z = sigmoid(W_z x + b_z), h~ = g(W_h x + b_h), h' = (1 - z) h + z h~ (see
    :class:`MinGRUCell`). No recurrent weights, so a sequence is one matrix product and a scan.

    Args:
        input_size: D.  hidden_size: H.  num_layers: L.
        bidirectional: K = 2, a backward layer reading each sequence from its last real step.
        dropout: on the outputs of every layer but the last, in training.
        bias: learn ``bias_ih``.
        scan: "sequential", "parallel" (log space) or "auto" (parallel on a GPU, sequential on CPU,
            where it is faster); settable later, ``layer.scan = "parallel"``.
        residual: add each layer's input to its output where the sizes agree.

    Example:
        >>> gru = rnnkit.MinGRU(8, 32, num_layers=2, bidirectional=True)
        >>> out = gru(torch.randn(4, 10, 8), lengths=[10, 7, 3, 1])
        >>> out.outputs.shape, out.state.h.shape    # (4, 10, 64), (4, 4, 32)
    """

    cell_class = MinGRUCell


class MinLSTM(_MinimalRNN):
    """minLSTM layers (Feng et al. 2024, sec. 3.2), batch first; arguments as :class:`MinGRU`.

    Each unit: f, i = sigmoid(...), h~ = g(W_h x + b_h), h' = f/(f+i) h + i/(f+i) h~ (see
    :class:`MinLSTMCell`). The state is ``RNNState(h)``: a minLSTM has no cell state.
    """

    cell_class = MinLSTMCell
