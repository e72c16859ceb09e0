"""Conditioning a recurrent decoder on a feature vector or a class: its start state, optionally each input.

    conditioning = Conditioning(size=64, classes=None, layers=2, hidden=128, state_type=LSTMState, inputs=32)
    state = conditioning.start(features)                 # (B, 64) -> ConditionedState
    x = conditioning.inputs(embedded, state.condition)   # (B, T, E) -> (B, T, E + 32)

A condition is either a float vector of C features (``size=C``: an image's features from any
encoder, a style vector) or a class id in [0, N) (``classes=N``), read as its one-hot vector, so
the projections' column c *is* class c's embedding. It sets the start state of every layer, each
field (h, and c for an LSTM) of each layer its own slice of one projection (Vinyals et al. 2015,
"Show and Tell", feed the image once, at the start; Xu et al. 2015, "Show, Attend and Tell", sec.
3.1.2, set h0 and c0 from the image through learned projections)::

    h0_l, c0_l = tanh(W_s c + b_s)[slices]              W_s: (L * fields * H, C)

With ``inputs`` set, the condition is also fed at every step beside the token's embedding
(Mao et al. 2015, "m-RNN"; Karpathy & Fei-Fei 2015 feed it once, which is ``inputs=None``)::

    x_t = [embedding(token_t); tanh(W_x c + b_x)]       W_x: (inputs, C)

The condition travels inside the state: :class:`ConditionedState` holds the layers' state and the
condition as (1, B, C), batch along dim 1 like every state tensor, so whatever selects, freezes,
detaches or carries state rows (beam search's reordering, sampling's finished rows, the trainer's
truncated BPTT) carries each row's condition with it, and a decoder called token by token with its
state reads its condition at every step without being given it again.

Shape letters as in :mod:`rnnkit`, plus C = the condition's width (size, or classes for class ids).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import ConfigError, DataError, DTypeError, ShapeError


class ConditionedState(NamedTuple):
    """A conditioned decoder's state: ``layers``, fields (L, B, H) as an unconditioned one's
    (``LSTMState(h, c)``, ``RNNState(h)``), and ``condition`` (1, B, C), the condition as read."""

    layers: Any
    condition: Tensor


class Conditioning(nn.Module):
    """A condition -> a decoder's start state, and the vector fed beside each input (module docs).

    Args:
        size: C, the features of a float condition; or None.
        classes: N, the classes of a class-id condition; or None. Exactly one of size and classes.
        layers, hidden: L and H of the decoder's stacked state.
        state_type: the NamedTuple of the layers' state (its fields are set from the condition).
        inputs: the width of the condition's vector beside each input; None feeds nothing.
    """

    def __init__(
        self,
        size: int | None,
        classes: int | None,
        layers: int,
        hidden: int,
        state_type: type[NamedTuple],
        inputs: int | None = None,
    ) -> None:
        super().__init__()
        if (size is None) == (classes is None):
            raise ConfigError(
                f"Conditioning takes exactly one of size (a feature vector) and classes (a class id); got "
                f"size={size!r}, classes={classes!r}"
            )
        self.size, self.classes = size, classes
        self.width = size or classes  # C
        self.layers, self.hidden, self.state_type = layers, hidden, state_type
        fields = len(state_type._fields)
        self.start_projection = nn.Linear(self.width, fields * layers * hidden)
        self.input_projection = None if inputs is None else nn.Linear(self.width, inputs)

    def vector(self, condition: Any) -> Tensor:
        """The condition checked and read as (B, C) floats: a (B, C) float tensor, or (B,) class ids."""
        if not isinstance(condition, Tensor):
            raise ShapeError(
                f"condition must be a torch.Tensor, {self._expected()}; got {type(condition).__name__}"
            )
        weight = self.start_projection.weight
        if self.classes is not None:
            if condition.is_floating_point() or condition.is_complex() or condition.dtype == torch.bool:
                raise DTypeError(
                    f"condition must be integer class ids, {self._expected()}; got dtype {condition.dtype}"
                )
            if condition.dim() != 1 or condition.shape[0] == 0:
                raise ShapeError(f"condition must be {self._expected()}; got shape {tuple(condition.shape)}")
            exporting = torch.compiler.is_exporting()  # symbolic ids under torch.export (rnnkit.export)
            low, high = (0, 0) if exporting else (int(condition.min()), int(condition.max()))
            if low < 0 or high >= self.classes:
                raise DataError(
                    f"condition class ids must lie in [0, {self.classes}) (num_conditions); got min {low}, "
                    f"max {high}: give the class's index in the classes the model was trained with"
                )
            return F.one_hot(condition.long().to(weight.device), self.classes).to(weight.dtype)  # (B, C)
        if not condition.is_floating_point():
            raise DTypeError(
                f"condition must be float features, {self._expected()}; got dtype {condition.dtype}"
            )
        if condition.dim() != 2 or condition.shape[1] != self.size or condition.shape[0] == 0:
            fix = " (add the batch dimension: condition.unsqueeze(0))" if condition.dim() == 1 else ""
            raise ShapeError(f"condition must be {self._expected()}; got shape {tuple(condition.shape)}{fix}")
        if not torch.compiler.is_exporting() and not bool(torch.isfinite(condition).all()):
            raise DataError("condition holds NaN or infinity; fill the features before decoding")
        return condition.to(device=weight.device, dtype=weight.dtype)

    def start(self, condition: Any) -> ConditionedState:
        """The state a batch starts from: every layer's fields tanh(W_s c + b_s), and c as (1, B, C)."""
        c = self.vector(condition)  # (B, C)
        B = c.shape[0]
        fields = torch.tanh(self.start_projection(c))  # (B, fields * L * H)
        fields = (
            fields.view(B, -1, self.layers, self.hidden).permute(1, 2, 0, 3).contiguous()
        )  # (fields, L, B, H)
        return ConditionedState(self.state_type(*fields), c.unsqueeze(0))  # fields (L, B, H); (1, B, C)

    def inputs(self, x: Tensor, condition: Tensor) -> Tensor:
        """x (B, T, E) and the state's condition (1, B, C) -> (B, T, E + inputs); x itself if none fed."""
        if self.input_projection is None:
            return x
        fed = torch.tanh(self.input_projection(condition[0]))  # (B, inputs)
        return torch.cat([x, fed.unsqueeze(1).expand(-1, x.shape[1], -1)], -1)  # (B, T, E + inputs)

    def _expected(self) -> str:
        if self.classes is not None:
            return f"(B,) class ids in [0, {self.classes}), one per row"
        return f"(B, {self.size}) features, one row per sequence"

    def extra_repr(self) -> str:
        kind = f"classes={self.classes}" if self.classes is not None else f"size={self.size}"
        return f"{kind}, fed_with_inputs={self.input_projection is not None}"
