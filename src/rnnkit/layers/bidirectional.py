"""Bidirectional: a forward and a backward recurrent layer over the same sequence, merged."""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError, unknown_name
from rnnkit.layers.recurrent import Recurrent, RNNOutput, split_state, stack_states

MERGES = {
    "concat": lambda a, b: torch.cat([a, b], -1),
    "sum": torch.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": torch.mul,
}


class Bidirectional(nn.Module):
    """Runs ``layer`` forward and a fresh copy of it backward, and merges their outputs.

    The backward copy reads each sequence from its own last real step, so padding never reaches it.

    Args:
        layer: a forward :class:`Recurrent`; the backward one is a copy with new weights.
        merge: "concat" (outputs (B, T, 2H), torch's layout), "sum", "mean" or "mul" ((B, T, H)).

    State fields are (2, B, H): forward then backward, as torch orders ``l0`` and ``l0_reverse``.
    The backward final state is the one after reading the first step.
    """

    num_states = 2

    def __init__(self, layer: Recurrent, merge: str = "concat") -> None:
        super().__init__()
        if not isinstance(layer, Recurrent) or layer.reverse:
            raise ConfigError("Bidirectional wraps a forward rnnkit Recurrent layer (reverse=False)")
        if merge not in MERGES:
            raise unknown_name("merge mode", merge, MERGES)
        backward_cell = copy.deepcopy(layer.cell)
        _reinitialise(backward_cell)
        self.forward_layer, self.backward_layer = layer, Recurrent(backward_cell, reverse=True)
        self.merge = merge
        self.input_size = layer.input_size
        self.output_size = layer.output_size * (2 if merge == "concat" else 1)

    def forward(self, x: Tensor, state: NamedTuple | None = None, lengths=None) -> RNNOutput:
        fw_state, bw_state = (None, None) if state is None else split_state(state, [1, 1])
        fw = self.forward_layer(x, fw_state, lengths)
        bw = self.backward_layer(x, bw_state, lengths)
        return RNNOutput(MERGES[self.merge](fw.outputs, bw.outputs), stack_states([fw.state, bw.state]))

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Forward then backward starting states: fields (2, B, H)."""
        return stack_states(
            [self.forward_layer.initial_state(batch_size), self.backward_layer.initial_state(batch_size)]
        )

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


def _reinitialise(module: nn.Module) -> None:
    """New weights for a copied cell: its own reset_parameters, else each submodule's."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    for child in module.children():
        _reinitialise(child)
