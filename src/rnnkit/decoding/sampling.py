"""Text generation from a prompt: greedy, temperature, top-k and top-p (nucleus) sampling; and the
best continuation by beam search (``generate_text(..., beam_width=k)``).

The model is anything with ``model(tokens (B, T) long, state=None) -> (logits (B, T, V), state)``
that takes its state back. ``generate`` reads the prompt once, in one forward over all its tokens,
then feeds one token at a time with the state carried, never re-reading the prefix. Sampling draws
from a local ``torch.Generator``, so a seed repeats the text and the global RNG is never touched.

Example::

    out = generate(model, torch.tensor([5, 9, 2]), max_tokens=20, top_p=0.9, seed=0)
    out.tokens  # (20,) the new ids; a (B, T) prompt gives (B, N)
    more = generate(model, out.tokens[-1:], 20, state=out.state, seed=1)  # carry on
    text = generate_text(model, codec, "The cat sat on the", 50, temperature=0.8, seed=0)
    best = generate_text(model, codec, "The cat sat on the", 50, beam_width=5)  # deterministic
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from rnnkit.decoding.prompts import check_prompt, check_vocab, start_state, to_model_device
from rnnkit.decoding.search import beam_generate
from rnnkit.errors import ConfigError, DataError, ShapeError


class Codec(Protocol):
    """Text <-> token ids, e.g. ``rnnkit.data.vocab.TextCodec``."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class Generation(NamedTuple):
    """What ``generate`` returns.

    tokens: the new ids, (N,) for a (T,) prompt and (B, N) for a (B, T) prompt, N <= max_tokens
        (fewer when every row ended with ``eos_id``); a row that ended is padded with ``eos_id``.
    state: the model's state after the prompt and each row's new tokens but its last one (the last
        one is sampled, never fed), batch along dim 1; continue with the last token as the prompt.
    """

    tokens: Tensor
    state: Any


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Logits (B, V) with all but the k largest of each row set to -inf.

    Exactly k survive (all V when k >= V); among equal logits the lower token id is kept.
    """
    _check_top_k(k)
    if k >= logits.shape[-1]:
        return logits
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # (B, V)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order[..., k:], True)
    return logits.masked_fill(drop, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Logits (B, V) outside each row's nucleus set to -inf (Holtzman et al. 2020, section 3.1).

    The nucleus is the smallest set of most likely tokens whose probability reaches p: tokens are
    taken in order of probability (lower id first among equal ones) until their sum is >= p. The
    most likely token is always kept; p = 1 keeps every token.
    """
    _check_top_p(p)
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (B, V)
    probs = torch.softmax(sorted_logits.to(_float(logits.dtype)), dim=-1)  # (B, V)
    ahead = torch.cumsum(probs, dim=-1)[..., :-1]  # (B, V-1) probability up to each token
    before = torch.cat([torch.zeros_like(probs[..., :1]), ahead], dim=-1)  # (B, V) of those ahead of it
    drop_sorted = before >= p  # the first token has nothing ahead of it, so it always stays
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    banned: Sequence[int] = (),
) -> Tensor:
    """Next token ids (B,) from the logits (B, V) of the last step.

    ``banned`` ids are never chosen (e.g. ``<unk>`` and ``<pad>`` when generating text).

    Greedy (``greedy=True`` or ``temperature=0``) takes the argmax, the lower id on ties. Otherwise
    the logits are divided by the temperature, then filtered by top-k, then by top-p (on the
    probabilities left after top-k, as Hugging Face's ``generate`` orders them), and one token is
    drawn per row from what remains, with ``generator`` (the global RNG when None).
    """
    _check_sampling(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ShapeError(f"logits must be (B, V); got shape {tuple(logits.shape)}: pass logits[:, -1]")
    if banned:
        index = torch.as_tensor(list(banned), device=logits.device)
        logits = logits.index_fill(-1, index, float("-inf"))
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.to(_float(logits.dtype))
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature  # (B, V) max at 0
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def generate(
    model: nn.Module,
    prompt: Tensor,
    max_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    eos_id: int | None = None,
    seed: int | None = None,
    state: Any = None,
    banned: Sequence[int] = (),
    condition: Any = None,
) -> Generation:
    """Up to ``max_tokens`` new ids after ``prompt`` (T,) or (B, T), each row sampled on its own.

    The prompt is read in one forward, from ``state`` (None: the model's initial state) or, for a
    conditioned model, from ``model.start(condition)``, one condition per prompt row (see
    :mod:`rnnkit.models.conditioning`); each new token is then fed alone with the state carried. A
    row stops at ``eos_id``, keeping the eos and padding after it with ``eos_id``; generation stops
    when every row has stopped. Sampling options are those of ``sample_next``; ``seed`` seeds a
    local generator on the model's device (None: a fresh random seed). The model runs in eval mode
    under ``torch.inference_mode()`` and gets its training flag back; the tensors returned are
    inference tensors. ``max_tokens=0`` reads nothing (and returns the state it would start from).
    """
    _check_sampling(temperature, top_k, top_p)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ConfigError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
    tokens = to_model_device(model, check_prompt(prompt))  # (B, T)
    B = tokens.shape[0]
    options = _sampling(
        tokens.device, seed, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, banned=banned
    )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            state = start_state(model, state, condition)
            if max_tokens == 0:
                return Generation(tokens.new_empty((B, 0) if prompt.dim() == 2 else (0,)), state)
            check_vocab(model, tokens, eos_id)
            out, state = _decode(model, tokens, max_tokens, eos_id, state, options)
    finally:
        model.train(was_training)
    return Generation(out if prompt.dim() == 2 else out[0], state)


def generate_text(
    model: nn.Module,
    codec: Codec,
    prompt: str,
    max_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    eos_id: int | None = None,
    seed: int | None = None,
    banned: Sequence[int] = (),
    beam_width: int | None = None,
    condition: Any = None,
) -> str:
    """The text that follows ``prompt`` (the continuation only, up to and without ``eos_id``);
    ``banned`` ids are never generated. With ``beam_width`` k: the most likely continuation a beam
    of k finds (:func:`rnnkit.decoding.beam_generate`, length penalty 1) instead of a sample, so the
    sampling options must keep their defaults. ``condition`` starts a conditioned model (one row)."""
    ids = codec.encode(prompt)
    if len(ids) == 0:
        raise DataError(f"the prompt {prompt!r} encodes to no tokens; give a prompt with some text")
    tokens = torch.tensor(ids, dtype=torch.long)
    if beam_width is not None:
        _check_no_sampling(
            beam_width, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed
        )
        found = beam_generate(
            model,
            tokens,
            max_tokens,
            beam_width=beam_width,
            eos_id=eos_id,
            banned=banned,
            condition=condition,
        )
        return codec.decode(found[0][0].tokens)
    out = generate(
        model,
        tokens,
        max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        eos_id=eos_id,
        seed=seed,
        banned=banned,
        condition=condition,
    )
    new = out.tokens.tolist()
    if eos_id is not None and eos_id in new:
        new = new[: new.index(eos_id)]
    return codec.decode(new)


def _sampling(device: torch.device, seed: int | None, **options) -> dict[str, Any]:
    """``sample_next``'s options with a local generator on ``device``, seeded with ``seed`` (None:
    a fresh seed from the OS, never the global RNG)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return {**options, "generator": generator}


def _decode(model, tokens: Tensor, max_tokens: int, eos_id: int | None, state: Any, options: dict):
    """The loop: one forward over the prompt, then one per new token; returns ((B, N), state)."""
    out = tokens.new_full((tokens.shape[0], max_tokens), 0 if eos_id is None else eos_id)  # (B, N)
    last = state
    for i, (token, last) in enumerate(_steps(model, tokens, max_tokens, eos_id, state, options)):  # noqa: B007
        out[:, i] = token
    return out[:, : i + 1], last


def _steps(model, tokens: Tensor, max_tokens: int, eos_id: int | None, state: Any, options: dict):
    """Each new token (B,) with the state before it is fed (the state ``generate`` returns after the
    last one): one forward over the prompt, then one per new token, each under inference mode."""
    with torch.inference_mode():
        logits, state = model(tokens, state)  # (B, T, V)
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)  # (B,)
    for i in range(max_tokens):
        with torch.inference_mode():
            token = sample_next(logits[:, -1], **options)  # (B,)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
        yield token, state
        if i == max_tokens - 1 or (eos_id is not None and bool(done.all())):
            return
        with torch.inference_mode():
            logits, new_state = model(token[:, None], state)  # (B, 1, V)
            state = _keep_rows(done, state, new_state) if eos_id is not None else new_state


def stream(
    model: nn.Module,
    prompt: Tensor,
    max_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    eos_id: int | None = None,
    seed: int | None = None,
    banned: Sequence[int] = (),
    condition: Any = None,
) -> Iterator[int]:
    """``generate`` for one prompt (T,), the new ids yielded one at a time as they are drawn (the
    same ids ``generate`` returns for the same seed), ending after ``eos_id`` (not yielded) or
    ``max_tokens``. The model is in eval mode until the iterator ends or is closed."""
    _check_sampling(temperature, top_k, top_p)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    tokens = to_model_device(model, check_prompt(prompt))  # (1, T)
    if tokens.shape[0] != 1:
        raise ShapeError(f"stream continues one prompt (T,), got a batch of {tokens.shape[0]}")
    options = _sampling(
        tokens.device, seed, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, banned=banned
    )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            state = start_state(model, None, condition)
            check_vocab(model, tokens, eos_id)
        for token, _ in _steps(model, tokens, max_tokens, eos_id, state, options):
            if eos_id is not None and int(token[0]) == eos_id:
                return
            yield int(token[0])
    finally:
        model.train(was_training)


def _keep_rows(done: Tensor, old: Any, new: Any) -> Any:
    """new state, but old in the rows that are done; tensors have the batch along dim 1."""
    if isinstance(new, Tensor):
        if new.dim() < 2 or new.shape[1] != done.shape[0]:
            raise ShapeError(
                f"state tensors must have the batch ({done.shape[0]}) along dim 1, as (L, B, H); "
                f"the model returned shape {tuple(new.shape)}"
            )
        return torch.where(done.view(1, -1, *[1] * (new.dim() - 2)), old, new)
    if isinstance(new, tuple) and hasattr(new, "_fields"):
        return type(new)(*(_keep_rows(done, o, n) for o, n in zip(old, new, strict=True)))
    if isinstance(new, (tuple, list)):
        return type(new)(_keep_rows(done, o, n) for o, n in zip(old, new, strict=True))
    return new


def _check_no_sampling(beam_width: int, **options) -> None:
    defaults = {"temperature": 1.0, "top_k": None, "top_p": None, "greedy": False, "seed": None}
    given = [name for name, value in options.items() if value != defaults[name]]
    if given:
        raise ConfigError(
            f"beam search (beam_width={beam_width}) samples nothing: drop {', '.join(given)}, "
            "or drop beam_width to sample"
        )


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and 0 <= temperature < float("inf")):
        raise ConfigError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)


def _check_top_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"top_k must be an integer >= 1, got {k!r}: use None to keep every token")


def _check_top_p(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ConfigError(f"top_p must lie in (0, 1], got {p!r}: use 1 or None to keep every token")


def _float(dtype: torch.dtype) -> torch.dtype:
    """At least float32, so half-precision logits are not summed in half precision."""
    return torch.promote_types(dtype, torch.float32)
