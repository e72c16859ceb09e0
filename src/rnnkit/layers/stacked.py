"""Stacked: layers on top of each other, with dropout between them and optional residuals."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, warn_user
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent, RNNOutput, split_state, stack_states


class Stacked(nn.Module):
    """A deep recurrent network: each layer reads the outputs of the one below.

    Args:
        layers: Recurrent or Bidirectional layers (or Stacked ones), each ``output_size`` equal to the
            next one's ``input_size``.
        dropout: dropout on the outputs of every layer but the last, in training (torch's ``dropout``).
        residual: add each layer's input to its output where the sizes agree (Wu et al. 2016, GNMT).

    State fields are (sum of the layers' num_states, B, H): layer 0 first, as in torch.nn.LSTM.
    """

    def __init__(self, layers: Sequence[nn.Module], dropout: float = 0.0, residual: bool = False) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("Stacked needs at least one layer")
        for i, (below, above) in enumerate(itertools.pairwise(layers)):
            if below.output_size != above.input_size:
                raise ConfigError(
                    f"layer {i} outputs {below.output_size} features but layer {i + 1} expects "
                    f"{above.input_size}: make input_size of layer {i + 1} equal {below.output_size}"
                )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(layers)
        self.dropout, self.residual = dropout, residual
        self.input_size, self.output_size = layers[0].input_size, layers[-1].output_size
        self.num_states = sum(layer.num_states for layer in layers)

    def forward(self, x: Tensor, state: NamedTuple | None = None, lengths=None) -> RNNOutput:
        sizes = [layer.num_states for layer in self.layers]
        states = [None] * len(self.layers) if state is None else split_state(state, sizes)
        mask = None
        if self.residual and lengths is not None:
            lens = check_lengths(lengths, x.shape[0], x.shape[1])
            mask = lengths_to_mask(lens, x.shape[1], x.device).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        finals = []
        for i, (layer, s) in enumerate(zip(self.layers, states, strict=True)):
            if i > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            out, s = layer(x, s, lengths)
            if self.residual and out.shape == x.shape:
                out = out + x if mask is None else (out + x) * mask
            x = out
            finals.append(s)
        return RNNOutput(x, stack_states(finals))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("dropout", self.dropout), ("residual", self.residual)) if v)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Every layer's starting state, stacked: fields (num_states, B, H)."""
        return stack_states([layer.initial_state(batch_size) for layer in self.layers])

    @classmethod
    def of_cells(
        cls,
        make_cell: Callable[[int], nn.Module],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
        hint: str = "",
    ) -> Stacked:
        """``num_layers`` Recurrent layers (Bidirectional when asked) over ``make_cell(input_size)``."""
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ConfigError(f"num_layers must be a positive int, got {num_layers!r}")
        if dropout and num_layers == 1:
            warn_user(
                f"dropout={dropout} acts between layers, and num_layers=1 has none: it does nothing.{hint}"
            )
        K = 2 if bidirectional else 1
        layers = []
        for i in range(num_layers):
            layer = Recurrent(make_cell(input_size if i == 0 else K * hidden_size))
            layers.append(Bidirectional(layer) if bidirectional else layer)
        return cls(layers, dropout=dropout, residual=residual)
