"""The AWD-LSTM regularisers (Merity et al. 2017): locked dropout, embedding dropout, weight drop.

    locked = LockedDropout(0.3)
    y = locked(x)                                     # x (B, T, F): one mask (B, 1, F) for every step
    words = EmbeddingDropout(vocab_size=V, p=0.1)
    e = words(embedding(tokens), tokens)              # every occurrence of a dropped word is zero
    out = weight_dropped(lstm, 0.5, x, state)         # lstm(x, state) with DropConnect on weight_hh

Each is off in eval mode (or at p = 0) and then costs nothing: the input, or the plain call, is returned.
Kept values are scaled by 1 / (1 - p), so nothing needs rescaling at evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.errors import ConfigError


def _check_p(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


class LockedDropout(nn.Module):
    """Variational ("locked") dropout on a sequence: one mask per sequence and feature, every step.

    x (B, T, F) -> x * m with m (B, 1, F) drawn once per call, m = Bernoulli(1 - p) / (1 - p)
    (Gal & Ghahramani 2016, sec. 4; Merity et al. 2017, sec. 4.2). A unit dropped at one step is
    dropped at all of them, so the recurrence is not fed fresh noise at every step.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_p("locked dropout p", p)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.p):
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[-1]).bernoulli_(1 - self.p)  # (B, 1, F)
        return x * mask.div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Module):
    """Word-level dropout: drop whole rows of the embedding matrix, i.e. every occurrence of a word.

    A mask over the vocabulary, keep (V,) = Bernoulli(1 - p) / (1 - p), is drawn once per call and
    applied to the looked-up vectors: embedded (B, T, E) * keep[tokens] (B, T, 1). That equals looking
    up in ``weight * keep[:, None]`` (Gal & Ghahramani 2016, sec. 4.2; Merity et al. 2017, sec. 4.3)
    without building a masked copy of the V x E matrix.
    """

    def __init__(self, vocab_size: int, p: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.p = vocab_size, _check_p("embedding dropout p", p)

    def forward(self, embedded: Tensor, tokens: Tensor) -> Tensor:
        """embedded (B, T, E), the lookup of tokens (B, T) -> (B, T, E)."""
        if not (self.training and self.p):
            return embedded
        keep = embedded.new_empty(self.vocab_size).bernoulli_(1 - self.p).div_(1 - self.p)  # (V,)
        return embedded * keep[tokens].unsqueeze(-1)  # (B, T, E)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, p={self.p}"


def recurrent_weight_names(module: nn.Module) -> list[str]:
    """The names of every hidden-to-hidden weight (``...weight_hh``) in ``module``, as named_parameters."""
    return [name for name, _ in module.named_parameters() if name.rsplit(".", 1)[-1] == "weight_hh"]


def weight_dropped(module: nn.Module, p: float, *inputs: Any, names: Sequence[str] | None = None) -> Any:
    """``module(*inputs)`` with DropConnect (Wan et al. 2013) on the weights named, in training mode.

    Weight drop (Merity et al. 2017, sec. 2): each element of every hidden-to-hidden matrix is zeroed
    with probability p, the rest scaled by 1 / (1 - p); one fresh mask per call, shared by the whole
    batch and every time step. The masked weights are passed to the call by
    :func:`torch.func.functional_call`, so torch's fused kernels still run, the module's parameters
    stay untouched, and gradients flow to them through the mask. In eval mode, or at p = 0, this is
    the plain ``module(*inputs)``.

    Args:
        module: a recurrent layer (rnnkit RNN, LSTM or GRU) or anything holding the named weights.
        p: the drop probability.
        names: parameter names as ``module.named_parameters()`` gives them; default: every weight_hh.
    """
    if not (module.training and p):
        return module(*inputs)
    names = recurrent_weight_names(module) if names is None else list(names)
    if not names:
        raise ConfigError(
            f"weight drop needs hidden-to-hidden weights (weight_hh), and {type(module).__name__} has "
            "none: use a cell with recurrent weights (rnn, lstm, gru) or set the weight drop to 0"
        )
    dropped = {name: F.dropout(module.get_parameter(name), p) for name in names}
    return functional_call(module, dropped, inputs)
