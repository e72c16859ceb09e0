"""Greedy and beam search, batched over examples: for encoder-decoders, and for language models
continuing a prompt.

    hypotheses = beam_search(model, source, lengths, beam_width=5, n_best=3)
    hypotheses[b][0].tokens       # example b's best output: ids without bos, cut before eos
    greedy = greedy_search(model, source, lengths)
    continuations = beam_generate(lm, prompt, max_tokens=20, beam_width=4, eos_id=3)

An encoder-decoder is anything with (see :class:`rnnkit.models.seq2seq.Seq2Seq`):

- ``model.encode(source (B, S), lengths) -> memory``, with ``memory.state`` the decoder's start
  and ``memory.select(index)`` the rows ``index`` of the batch;
- ``model.decode_step(tokens (B,), state, memory) -> (logits (B, V), state, weights (B, S) or None)``,
  with ``state.select(index)`` likewise;
- ``model.config.bos_id`` and ``model.config.eos_id``.

A language model is called ``model(tokens (B, T), state) -> (logits (B, T, V), state)``, its state
tensors (L, B, H) with the batch along dim 1, alone or in (named) tuples, None for its start.

Scores, ranking and the stopping rule are those of :func:`rnnkit.decoding.beam.run`: ``score`` sums
the log-probabilities, eos included; beam search ranks by score / n ** length_penalty, n the tokens
scored. ``max_len`` caps the tokens scored, eos included; an output cut there has no eos. None gives
each example 2 * S_b + 10, S_b its source length. The searches run in eval mode under ``no_grad``
and restore the model's mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.decoding import beam
from rnnkit.decoding.beam import Hypothesis, beam_rows, check_options, inference, positive_int
from rnnkit.decoding.prompts import check_prompt, check_vocab, start_state, to_model_device
from rnnkit.errors import ConfigError, ShapeError


def greedy_search(
    model: nn.Module, source: Tensor, lengths=None, max_len: int | None = None
) -> list[list[Hypothesis]]:
    """The most likely token at every step, one Hypothesis per example (``normalized``: score / n)."""
    _check_max_len(max_len)
    limits = _limits(source, lengths, max_len)
    with inference(model):
        ids, log_probs, attention = _greedy_steps(model, source, lengths, limits)
    eos, hypotheses = model.config.eos_id, []
    for b, row in enumerate(ids):
        n = min(row.index(eos) + 1 if eos in row else len(row), limits[b])  # tokens scored
        score = float(log_probs[b, :n].sum())
        length = n - 1 if row[n - 1] == eos else n
        att = None if attention is None else attention[b, :length]
        hypotheses.append([Hypothesis(row[:length], score, score / n, att)])
    return hypotheses


def _greedy_steps(model, source: Tensor, lengths, limits: list[int]) -> tuple:
    """Argmax decoding until every example has reached eos or its limit: ids (B, N) as lists,
    their log-probabilities (B, N) and the attention weights (B, N, S) or None, on the CPU."""
    memory = model.encode(source, lengths)
    B, eos = source.shape[0], model.config.eos_id
    tokens, state = source.new_full((B,), model.config.bos_id), memory.state
    last = torch.as_tensor(limits, device=source.device) - 1  # (B,): each example's last step
    done = torch.zeros(B, dtype=torch.bool, device=source.device)
    steps, scores, weights = [], [], []
    for t in range(max(limits)):
        logits, state, step_weights = model.decode_step(tokens, state, memory)
        score, tokens = torch.log_softmax(logits.float(), -1).max(-1)  # (B,), (B,)
        steps.append(tokens)
        scores.append(score)
        weights.append(step_weights)
        done |= (tokens == eos) | (last <= t)
        if bool(done.all()):
            break
    attention = None if weights[0] is None else torch.stack(weights, 1).float().cpu()  # (B, N, S)
    return torch.stack(steps, 1).tolist(), torch.stack(scores, 1).cpu(), attention


def beam_search(
    model: nn.Module,
    source: Tensor,
    lengths=None,
    beam_width: int = 5,
    max_len: int | None = None,
    length_penalty: float = 1.0,
    n_best: int = 1,
    exhaustive: bool = False,
) -> list[list[Hypothesis]]:
    """The ``n_best`` best hypotheses of each example, best first, by a beam of ``beam_width``.

    An example stops at max_len, or once it has ``beam_width`` finished hypotheses and no open beam
    scores better now (Hugging Face's default rule); ``exhaustive=True`` goes on until no open beam
    could beat its n_best even at max_len (slower). See :func:`rnnkit.decoding.beam.run`.
    ``beam_width=1`` is greedy.
    """
    _check_max_len(max_len)
    check_options(beam_width=beam_width, n_best=n_best, length_penalty=length_penalty)
    c = model.config
    options = beam.Options(beam_width, length_penalty, n_best, exhaustive, c.eos_id)
    with inference(model):
        rows = beam_rows(source.shape[0], beam_width, source.device)  # (B*K,)
        memory = model.encode(source, lengths).select(rows)

        def step(tokens: Tensor, state: Any) -> tuple:
            return model.decode_step(tokens, state, memory)

        tokens = source.new_full(rows.shape, c.bos_id)  # (B*K,)
        limits = _limits(source, lengths, max_len)
        return beam.run(step, lambda state, index: state.select(index), memory.state, tokens, limits, options)


def beam_generate(
    model: nn.Module,
    prompt: Tensor,
    max_tokens: int,
    *,
    beam_width: int = 5,
    length_penalty: float = 1.0,
    n_best: int = 1,
    eos_id: int | None = None,
    state: Any = None,
    banned: Sequence[int] = (),
    condition: Any = None,
) -> list[list[Hypothesis]]:
    """The ``n_best`` best continuations of each row of ``prompt`` (T,) or (B, T), best first.

    The prompt is read once from ``state`` (None: the model's start; with ``condition``, a
    conditioned model's ``model.start(condition)``, one condition per prompt row), its last token
    fed with the state carried, as :func:`rnnkit.decoding.generate` does; then the B * beam_width
    beams step together, the state's rows following their beams (and with them the condition a
    conditioned model carries in its state). A continuation ends at ``eos_id`` (not in its
    tokens) or after ``max_tokens`` tokens (eos counted); ``banned`` ids are never chosen.
    Hypothesis tokens are the new ids only.
    Stopping rule and ranking: :func:`beam_search`'s. ``beam_width=1`` is greedy ``generate``.
    """
    check_options(beam_width=beam_width, n_best=n_best, length_penalty=length_penalty)
    if not positive_int(max_tokens):
        raise ConfigError(f"max_tokens must be an integer >= 1 for beam search, got {max_tokens!r}")
    tokens = to_model_device(model, check_prompt(prompt))  # (B, T)
    (B, T), K = tokens.shape, beam_width
    options = beam.Options(K, length_penalty, n_best, False, eos_id, banned)
    with inference(model):
        check_vocab(model, tokens, eos_id)
        state = start_state(model, state, condition)
        if T > 1:
            _, state = model(tokens[:, :-1], state)  # fields (L, B, H)
        rows = beam_rows(B, K, tokens.device)  # (B*K,)
        state = _state_rows(state, rows, B)

        def step(last: Tensor, state: Any) -> tuple:
            logits, state = model(last[:, None], state)  # (B*K, 1, V)
            return logits[:, -1], state, None

        def select(state: Any, index: Tensor) -> Any:
            return _state_rows(state, index, B * K)

        return beam.run(step, select, state, tokens[:, -1].index_select(0, rows), [max_tokens] * B, options)


def _state_rows(state: Any, rows: Tensor, batch: int) -> Any:
    """The rows ``rows`` of a language model's state of ``batch`` rows: tensors along dim 1."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        if state.dim() < 2 or state.shape[1] != batch:
            raise ShapeError(
                f"state tensors must have the batch ({batch}) along dim 1, as (L, B, H); "
                f"got shape {tuple(state.shape)}"
            )
        return state.index_select(1, rows)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_state_rows(s, rows, batch) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(_state_rows(s, rows, batch) for s in state)
    raise ShapeError(
        f"a language model's state must be tensors (L, B, H), (named) tuples or lists of them, or None; "
        f"got {type(state).__name__}"
    )


def _limits(source: Tensor, lengths, max_len: int | None) -> list[int]:
    """Each example's max_len: the one given, or 2 * S_b + 10."""
    if max_len is not None:
        return [max_len] * source.shape[0]
    sizes = [source.shape[1]] * source.shape[0] if lengths is None else torch.as_tensor(lengths).tolist()
    return [2 * s + 10 for s in sizes]


def _check_max_len(max_len: int | None) -> None:
    if max_len is not None and not positive_int(max_len):
        raise ConfigError(
            f"max_len must be an integer >= 1, or None for 2 * source length + 10; got {max_len!r}"
        )
