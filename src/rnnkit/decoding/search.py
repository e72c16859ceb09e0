"""Greedy and beam search for encoder-decoders, batched over examples.

    hypotheses = beam_search(model, source, lengths, beam_width=5, n_best=3)
    hypotheses[b][0].tokens       # example b's best output: ids without bos, cut before eos
    greedy = greedy_search(model, source, lengths)

The model is anything with (see :class:`rnnkit.models.seq2seq.Seq2Seq`):

- ``model.encode(source (B, S), lengths) -> memory``, with ``memory.state`` the decoder's start
  and ``memory.select(index)`` the rows ``index`` of the batch;
- ``model.decode_step(tokens (B,), state, memory) -> (logits (B, V), state, weights (B, S) or None)``,
  with ``state.select(index)`` likewise;
- ``model.config.bos_id`` and ``model.config.eos_id``.

A hypothesis' ``score`` is the sum of the log-probabilities of its tokens, eos included when it
reached one. Beam search ranks by ``normalized`` = score / n ** length_penalty, n the tokens scored
(eos included): 0 ranks by the plain score, which favours short outputs; 1 by the mean per token.
``max_len`` caps the tokens scored, eos included; an output cut there has no eos. None gives each
example 2 * S_b + 10, S_b its source length. Both searches run in eval mode under ``no_grad`` and
restore the model's mode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError


class Hypothesis(NamedTuple):
    """tokens: the output ids, without bos and eos; score: their total log-probability (eos included);
    normalized: the score beam search ranks by; attention: weights (len(tokens), S) or None."""

    tokens: list[int]
    score: float
    normalized: float
    attention: Tensor | None


def greedy_search(
    model: nn.Module, source: Tensor, lengths=None, max_len: int | None = None
) -> list[list[Hypothesis]]:
    """The most likely token at every step, one Hypothesis per example (``normalized``: score / n)."""
    _check_options(max_len=max_len)
    limits = _limits(source, lengths, max_len)
    with _inference(model):
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
) -> list[list[Hypothesis]]:
    """The ``n_best`` best hypotheses of each example, best first, by a beam of ``beam_width``.

    All B * beam_width beams step together. At each step every beam proposes its extensions; of the
    best 2 * beam_width, those ending in eos among the first beam_width are put aside as finished,
    and the best beam_width others go on. An example stops when it has ``n_best`` finished
    hypotheses that no open beam can beat (its best score over max_len ** length_penalty, the most
    it could still normalise to; with a length penalty this may run to max_len), or at max_len,
    where its open beams finish without eos. So ``beam_width=1, length_penalty=0`` is greedy.
    """
    _check_options(max_len=max_len, beam_width=beam_width, n_best=n_best, length_penalty=length_penalty)
    with _inference(model):
        search = _Beam(model, source, lengths, beam_width, max_len, length_penalty, n_best)
        return search.run()


class _Beam:
    """The state of one batched beam search; beams of example b are rows b*K .. b*K + K - 1."""

    def __init__(self, model, source, lengths, K: int, max_len, alpha: float, n_best: int) -> None:
        self.model, self.K, self.alpha, self.n_best = model, K, alpha, n_best
        self.B, self.eos, device = source.shape[0], model.config.eos_id, source.device
        self.limits = _limits(source, lengths, max_len)
        self.memory = model.encode(source, lengths).select(
            torch.arange(self.B, device=device).repeat_interleave(K)
        )
        self.scores = torch.full((self.B, K), -math.inf, device=device)  # (B, K)
        self.scores[:, 0] = 0.0  # one live beam to start: the others would repeat it
        self.tokens = source.new_full((self.B * K,), model.config.bos_id)  # (B*K,)
        self.history = source.new_zeros(self.B, K, 0)  # (B, K, t): each beam's tokens
        self.attention = None  # (B, K, t, S) once the model returns weights
        self.finished: list[list[Hypothesis]] = [[] for _ in range(self.B)]
        self.done = [False] * self.B

    def run(self) -> list[list[Hypothesis]]:
        state = self.memory.state
        for t in range(max(self.limits)):
            logits, state, weights = self.model.decode_step(self.tokens, state, self.memory)
            origin = self._step(t, torch.log_softmax(logits.float(), -1), weights)  # (B, K)
            rows = torch.arange(self.B, device=origin.device)[:, None] * self.K + origin  # (B, K)
            state = state.select(rows.flatten())
            if all(self.done):
                break
        return [sorted(f, key=lambda h: -h.normalized)[: self.n_best] for f in self.finished]

    def _step(self, t: int, log_probs: Tensor, weights: Tensor | None) -> Tensor:
        """Extend every beam by one token; returns each kept beam's origin (B, K)."""
        B, K = self.B, self.K
        V = log_probs.shape[-1]
        candidates = (self.scores.unsqueeze(-1) + log_probs.view(B, K, V)).view(B, K * V)
        top, index = candidates.topk(2 * K, -1)  # (B, 2K), best first
        origin, token = index // V, index % V  # (B, 2K)
        if weights is not None:
            step = weights.float().view(B, K, 1, -1)  # (B, K, 1, S)
            self.attention = step if self.attention is None else torch.cat([self.attention, step], 2)
        self._finish_eos(t, top[:, :K], origin[:, :K], token[:, :K])
        rank = (token == self.eos).long() * 2 * K + torch.arange(2 * K, device=token.device)  # (B, 2K)
        keep = rank.topk(K, -1, largest=False).indices  # (B, K): the best K without eos, in order
        self.scores, origin, token = top.gather(1, keep), origin.gather(1, keep), token.gather(1, keep)
        self.history = torch.cat([_rows(self.history, origin), token.unsqueeze(-1)], -1)  # (B, K, t+1)
        if self.attention is not None:
            self.attention = _rows(self.attention, origin)  # (B, K, t+1, S)
        self.tokens = token.flatten()
        self._finish_at_limit(t)
        for b in range(B):
            self.done[b] = self.done[b] or self._cannot_improve(b)
        return origin

    def _finish_eos(self, t: int, top: Tensor, origin: Tensor, token: Tensor) -> None:
        """Put aside the candidates ending in eos among each example's K best."""
        hits = (token == self.eos).nonzero().tolist()
        if hits:
            top, origin = top.tolist(), origin.tolist()
        for b, r in hits:
            if not self.done[b] and top[b][r] > -math.inf:
                self._add(b, origin[b][r], top[b][r], t, t + 1)

    def _finish_at_limit(self, t: int) -> None:
        """Examples whose max_len is reached: their open beams finish without eos."""
        for b, limit in enumerate(self.limits):
            if t + 1 == limit and not self.done[b]:
                for k, score in enumerate(self.scores[b].tolist()):
                    if score > -math.inf:
                        self._add(b, k, score, t + 1, t + 1)
                self.done[b] = True

    def _add(self, b: int, k: int, score: float, length: int, n: int) -> None:
        """Beam k of example b, its first ``length`` tokens, as a finished hypothesis of n scored tokens."""
        tokens = self.history[b, k, :length].tolist()
        attention = None if self.attention is None else self.attention[b, k, :length].cpu()
        self.finished[b].append(Hypothesis(tokens, score, score / n**self.alpha, attention))

    def _cannot_improve(self, b: int) -> bool:
        finished = self.finished[b]
        if len(finished) < self.n_best:
            return False
        kth = sorted((h.normalized for h in finished), reverse=True)[self.n_best - 1]
        best_open = float(self.scores[b].max())  # <= 0, and only falls as a beam grows
        return kth >= best_open / self.limits[b] ** self.alpha


def _rows(history: Tensor, origin: Tensor) -> Tensor:
    """history (B, K, ...) -> the rows ``origin`` (B, K) of each example."""
    index = origin.view(*origin.shape, *[1] * (history.dim() - 2)).expand(-1, -1, *history.shape[2:])
    return history.gather(1, index)


def _limits(source: Tensor, lengths, max_len: int | None) -> list[int]:
    """Each example's max_len: the one given, or 2 * S_b + 10."""
    if max_len is not None:
        return [max_len] * source.shape[0]
    sizes = [source.shape[1]] * source.shape[0] if lengths is None else torch.as_tensor(lengths).tolist()
    return [2 * s + 10 for s in sizes]


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_options(
    *, max_len: int | None, beam_width: int = 1, n_best: int = 1, length_penalty: float = 0.0
) -> None:
    def positive_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if max_len is not None and not positive_int(max_len):
        raise ConfigError(
            f"max_len must be an integer >= 1, or None for 2 * source length + 10; got {max_len!r}"
        )
    if not positive_int(beam_width):
        raise ConfigError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    if not positive_int(n_best) or n_best > beam_width:
        raise ConfigError(
            f"n_best must be an integer in [1, beam_width={beam_width}], got {n_best!r}: a beam keeps "
            "beam_width hypotheses at most, so widen the beam"
        )
    if not (isinstance(length_penalty, (int, float)) and 0 <= length_penalty < math.inf):
        raise ConfigError(
            f"length_penalty must be a number >= 0 (0: no normalisation), got {length_penalty!r}"
        )
