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


# Docstring blocks MinGRU and MinLSTM share, filled into each class's %(...)s fields by _shared_docs.
_SHARED_DOCS = {
    "where": """with g(v) = v + 0.5 for v >= 0 and sigmoid(v) below (appendix B.3), which keeps h_t positive
    from a positive or zero start. x_t is the layer's input (the input for layer 0, the outputs of
    the layer below for the others); h_0 is zeros or the state passed in. No gate reads h_(t-1), so
    the projections of all steps are one matrix product and h_t = a_t h_(t-1) + b_t is a scan.""",
    "args": """input_size: D, features per step of the input.
        hidden_size: H, features in the hidden state (and in each direction's outputs).
        num_layers: L, layers stacked, each reading the outputs of the one below.
        bidirectional: K = 2: every layer also reads each sequence backwards, from its last real
            step to its first; the two directions' outputs are concatenated.
        dropout: on the outputs of every layer but the last, in training (warns with num_layers=1).
        bias: learn the biases (``bias_ih``).
        scan: "sequential" (an elementwise loop over time), "parallel" (the log-space scan,
            Heinsen 2023) or "auto" (parallel on a GPU, sequential on CPU, where it is faster: see
            benchmarks/README.md); settable later, ``layer.scan = "parallel"``.
        residual: add each layer's input to its output where their sizes agree (Wu et al. 2016).""",
    "io": """Inputs: x (B, T, D) in the weights' dtype, state=None, lengths=None
        state: ``RNNState(h_0)`` or a bare tensor h_0, (L*K, B, H); None: zeros.
        lengths: (B,) real steps per sequence, 1 <= length <= T: a list or a tensor on any
            device, in any order. None: every sequence is T steps long.

    Outputs: RNNOutput(outputs, state)
        outputs: (B, T, K*H), the top layer's h_t at every step (with K = 2, the forward
            direction in the first H features); zero at padded steps (t >= length).
        state: ``RNNState(h_n)``, (L*K, B, H): h after each sequence's last real step.""",
    "attributes": """scan: the cells' scan, read and set as one.
        state_type (RNNState), output_size (K*H), num_states (L*K).""",
    "notes": """- State rows are in torch.nn.GRU's order: layer 0 forward, layer 0 backward, layer 1
          forward, ...; the backward direction ends at step 0, so its final h is (without
          ``residual``) ``outputs[:, 0, H:]``, and padded steps never change the state.
        - The parallel scan works in log space: a given state with negative entries (log h_0 does
          not exist), or with zeros that need a gradient, runs the sequential scan instead.
        - Weights start at U(-1/sqrt(H), 1/sqrt(H)) like torch.nn's recurrent layers (the paper's
          linear layers would draw U(-1/sqrt(D), 1/sqrt(D))). state_dict keys are rnnkit's own
          (``stack.layers.0.cell.weight_ih``): torch.nn has no such layer to load them into.
        - There is no layer_norm, recurrent_dropout, zoneout or learn_initial_state here.""",
}


def _shared_docs(cls: type) -> type:
    cls.__doc__ %= _SHARED_DOCS
    return cls


@_shared_docs
class MinGRU(_MinimalRNN):
    """minGRU layers (Feng et al. 2024, sec. 3.1), batch first, with rnnkit.GRU's interface.

    Each layer computes, at every step t::

        z_t = sigmoid(W_z x_t + b_z)
        h~_t = g(W_h x_t + b_h)
        h_t = (1 - z_t) * h_(t-1) + z_t * h~_t

    %(where)s

    Args:
        %(args)s

    %(io)s

    Attributes:
        cells: the L*K :class:`MinGRUCell` in the state's row order, each with ``weight_ih``
            (2H, D) for layer 0, (2H, K*H) above (z and h~ stacked), and ``bias_ih`` (2H,).
        %(attributes)s

    Notes:
        %(notes)s

    Example:
        >>> gru = rnnkit.MinGRU(8, 32, num_layers=2, bidirectional=True)
        >>> out = gru(torch.randn(4, 10, 8), lengths=[10, 7, 3, 1])
        >>> out.outputs.shape, out.state.h.shape    # (4, 10, 64), (4, 4, 32)
    """

    cell_class = MinGRUCell


@_shared_docs
class MinLSTM(_MinimalRNN):
    """minLSTM layers (Feng et al. 2024, sec. 3.2), batch first, with rnnkit.GRU's interface.

    Each layer computes, at every step t::

        f_t = sigmoid(W_f x_t + b_f)
        i_t = sigmoid(W_i x_t + b_i)
        h~_t = g(W_h x_t + b_h)
        h_t = f_t / (f_t + i_t) * h_(t-1) + i_t / (f_t + i_t) * h~_t

    %(where)s
    Unlike an LSTM there is no cell state and no output gate: the state is ``RNNState(h)``.

    Args:
        %(args)s

    %(io)s

    Attributes:
        cells: the L*K :class:`MinLSTMCell` in the state's row order, each with ``weight_ih``
            (3H, D) for layer 0, (3H, K*H) above (f, i and h~ stacked), and ``bias_ih`` (3H,).
        %(attributes)s

    Notes:
        %(notes)s

    Example:
        >>> lstm = rnnkit.MinLSTM(8, 32, num_layers=2, scan="sequential")
        >>> out = lstm(torch.randn(4, 10, 8))
        >>> out.outputs.shape, out.state.h.shape    # (4, 10, 32), (2, 4, 32)
        >>> lstm.scan = "parallel"                  # the same numbers, up to rounding
    """

    cell_class = MinLSTMCell
