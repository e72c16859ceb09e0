"""Checks of a prompt for a language model, shared by sampling and beam search."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError, DataError, DTypeError, ShapeError


def check_prompt(prompt: Any) -> Tensor:
    """prompt (T,) or (B, T) of integer ids >= 0 -> (B, T) long."""
    if not isinstance(prompt, Tensor):
        raise DTypeError(f"prompt must be a tensor of token ids, got {type(prompt).__name__}")
    if prompt.dtype == torch.bool or prompt.is_floating_point() or prompt.is_complex():
        raise DTypeError(f"prompt must hold integer token ids, got dtype {prompt.dtype}: pass torch.long")
    if prompt.dim() not in (1, 2):
        raise ShapeError(f"prompt must be (T,) or (B, T); got shape {tuple(prompt.shape)}")
    if prompt.numel() == 0:
        raise DataError(
            f"prompt is empty (shape {tuple(prompt.shape)}); give at least one token, e.g. the begin symbol"
        )
    if int(prompt.min()) < 0:
        raise DataError(
            f"prompt ids must be >= 0, got {int(prompt.min())}: encode the text with the vocabulary"
        )
    return prompt.long().reshape(-1, prompt.shape[-1])


def check_vocab(model: nn.Module, tokens: Tensor, eos_id: int | None) -> None:
    """Prompt ids and eos_id must lie in [0, V); V is the model's ``config.vocab_size`` when it has
    one (a conditioned model cannot run without its condition), else from the logits of one token 0."""
    # Checked before reading the prompt: an out-of-range id in an embedding is a device assert on GPU.
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(V, int):
        logits, _ = model(tokens.new_zeros(1, 1), None)
        if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != (1, 1):
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ShapeError(f"model(tokens (1, 1)) must return logits (1, 1, V) first; got {got}")
        V = logits.shape[-1]
    if (top := int(tokens.max())) >= V:
        raise DataError(
            f"prompt id {top} lies outside the model's vocabulary of {V} tokens (ids 0..{V - 1}): "
            "encode the prompt with the vocabulary the model was trained with"
        )
    if eos_id is not None and not (isinstance(eos_id, int) and 0 <= eos_id < V):
        raise ConfigError(f"eos_id must be a token id in [0, {V}), got {eos_id!r}")


def to_model_device(model: nn.Module, tokens: Tensor) -> Tensor:
    """tokens on the device of the model's first parameter (where they are, for a model without)."""
    parameter = next(model.parameters(), None)
    return tokens if parameter is None else tokens.to(parameter.device)


def start_state(model: nn.Module, state: Any, condition: Any) -> Any:
    """The state decoding starts from: ``state``, or a conditioned model's ``model.start(condition)``
    (one condition per prompt row; the state carries it through every step and beam)."""
    if condition is None:
        return state
    if state is not None:
        raise ConfigError(
            "give a condition to start from, or a state to go on from (it carries its condition), not both"
        )
    start = getattr(model, "start", None)
    if not callable(start):
        raise ConfigError(
            f"{type(model).__name__} takes no condition (it has no start(condition) method): drop condition"
        )
    return start(condition)
