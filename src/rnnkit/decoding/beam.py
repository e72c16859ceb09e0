"""The beam search core, over a step function and a state reorder, batched over examples.

:func:`rnnkit.decoding.beam_search` (encoder-decoders) and :func:`rnnkit.decoding.beam_generate`
(language models) are adapters that give it three things:

- ``step(tokens (N,), state) -> (logits (N, V), state, weights (N, S) or None)``, N = B * K rows,
  the beams of example b in rows b*K .. b*K + K - 1;
- ``select(state, rows (N,)) -> state``: those rows of the state, in that order;
- the start: the state and the first tokens (N,), each example's beams alike.

A hypothesis' ``score`` is the sum of the log-probabilities of its tokens, eos included when it
reached one; ``normalized`` = score / n ** length_penalty ranks them, n the tokens scored. Logits of
``banned`` ids are set to -inf before the log-softmax, so scores are log-probabilities over the
tokens allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError

Step = Callable[[Tensor, Any], tuple[Tensor, Any, Tensor | None]]
Select = Callable[[Any, Tensor], Any]


class Hypothesis(NamedTuple):
    """tokens: the output ids, without bos and eos; score: their total log-probability (eos included);
    normalized: the score beam search ranks by; attention: weights (len(tokens), S) or None."""

    tokens: list[int]
    score: float
    normalized: float
    attention: Tensor | None


class Options(NamedTuple):
    """K: the beam width; alpha: the length penalty; exhaustive: the stopping rule (``run``); eos: the
    end id (None: every beam runs to its limit); banned: ids never chosen."""

    K: int
    alpha: float
    n_best: int
    exhaustive: bool
    eos: int | None
    banned: Sequence[int] = ()


def run(
    step: Step, select: Select, state: Any, tokens: Tensor, limits: list[int], options: Options
) -> list[list[Hypothesis]]:
    """The ``n_best`` best hypotheses of each of the B = len(limits) examples, best first.

    ``limits[b]`` caps example b's tokens scored, eos included; an output cut there has no eos.
    All B * K beams step together. At each step every beam proposes its extensions; of each
    example's best 2K, those ending in eos among the first K are put aside as finished, and the best
    K others go on (as fairseq's ``SequenceGenerator`` does). An example stops at its limit, where its
    open beams finish without eos, or once it has K finished hypotheses and the K-th best of them
    (normalized) is at least the best open beam's score normalised at its current length n: the
    default stopping rule of Hugging Face transformers (``early_stopping=False``,
    ``BeamHypotheses.is_done``). It is a heuristic, as an open beam may still gain under a length
    penalty. ``exhaustive`` waits instead until the n_best-th best finished is at least the best
    open score normalised at the limit, the most that beam could reach (as ``early_stopping="never"``):
    exact within the beam, but with a length penalty it often runs to the limit. Width 1 is greedy:
    at any length penalty under the default rule, at length_penalty 0 under the exhaustive one.
    """
    beam = _Beam(tokens, limits, options)
    for t in range(max(limits)):
        logits, state, weights = step(beam.tokens, state)
        origin = beam.step(t, _log_probs(logits, options.banned), weights)  # (B, K)
        if all(beam.done):
            break
        rows = torch.arange(len(limits), device=origin.device)[:, None] * options.K + origin  # (B, K)
        state = select(state, rows.flatten())
    return [sorted(f, key=lambda h: -h.normalized)[: options.n_best] for f in beam.finished]


def beam_rows(B: int, K: int, device: torch.device) -> Tensor:
    """The rows (B * K,) that repeat each example K times: 0, 0, .., 1, 1, .."""
    return torch.arange(B, device=device).repeat_interleave(K)


class _Beam:
    """The beams of one batched search: scores (B, K), tokens so far (B, K, t), finished lists."""

    def __init__(self, tokens: Tensor, limits: list[int], options: Options) -> None:
        self.o, self.limits, B, K = options, limits, len(limits), options.K
        self.scores = torch.full((B, K), -math.inf, device=tokens.device)  # (B, K)
        self.scores[:, 0] = 0.0  # one live beam to start: the others would repeat it
        self.tokens = tokens  # (B*K,)
        self.history = tokens.new_zeros(B, K, 0)  # (B, K, t): each beam's tokens
        self.attention = None  # (B, K, t, S) once the step returns weights
        self.finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        self.done = [False] * B

    def step(self, t: int, log_probs: Tensor, weights: Tensor | None) -> Tensor:
        """Extend every beam by one token; returns each kept beam's origin (B, K)."""
        B, K, eos = len(self.limits), self.o.K, self.o.eos
        V = log_probs.shape[-1]
        candidates = (self.scores.unsqueeze(-1) + log_probs.view(B, K, V)).view(B, K * V)
        top, index = candidates.topk(2 * K, -1)  # (B, 2K), best first
        origin, token = index // V, index % V  # (B, 2K)
        if weights is not None:
            step = weights.float().view(B, K, 1, -1)  # (B, K, 1, S)
            self.attention = step if self.attention is None else torch.cat([self.attention, step], 2)
        ends = torch.zeros_like(token, dtype=torch.bool) if eos is None else token == eos  # (B, 2K)
        self._finish_eos(t, top[:, :K], origin[:, :K], ends[:, :K])
        rank = ends.long() * 2 * K + torch.arange(2 * K, device=token.device)  # (B, 2K)
        keep = rank.topk(K, -1, largest=False).indices  # (B, K): the best K without eos, in order
        self.scores, origin, token = top.gather(1, keep), origin.gather(1, keep), token.gather(1, keep)
        self.history = torch.cat([_rows(self.history, origin), token.unsqueeze(-1)], -1)  # (B, K, t+1)
        if self.attention is not None:
            self.attention = _rows(self.attention, origin)  # (B, K, t+1, S)
        self.tokens = token.flatten()
        self._finish_at_limit(t)
        best_open = self.scores.max(-1).values.tolist()  # (B,)
        for b in range(B):
            self.done[b] = self.done[b] or self._stops(b, best_open[b], t + 1)
        return origin

    def _finish_eos(self, t: int, top: Tensor, origin: Tensor, ends: Tensor) -> None:
        """Put aside the candidates ending in eos among each example's K best."""
        hits = ends.nonzero().tolist()
        if hits:
            top, origin = top.tolist(), origin.tolist()
        for b, r in hits:
            if not self.done[b] and top[b][r] > -math.inf:
                self._add(b, origin[b][r], top[b][r], t, t + 1)

    def _finish_at_limit(self, t: int) -> None:
        """Examples whose limit is reached: their open beams finish without eos."""
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
        self.finished[b].append(Hypothesis(tokens, score, score / n**self.o.alpha, attention))

    def _stops(self, b: int, best_open: float, n: int) -> bool:
        """The stopping rule of ``run``; best_open: the best open beam's score, n: its tokens."""
        needed = self.o.n_best if self.o.exhaustive else self.o.K
        if len(self.finished[b]) < needed:
            return False
        bar = sorted((h.normalized for h in self.finished[b]), reverse=True)[needed - 1]
        n = self.limits[b] if self.o.exhaustive else n
        return bar >= best_open / n**self.o.alpha


def _log_probs(logits: Tensor, banned: Sequence[int]) -> Tensor:
    """logits (N, V) -> log-probabilities (N, V) in float32 at least, banned ids at -inf."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if banned:
        logits = logits.index_fill(-1, torch.as_tensor(list(banned), device=logits.device), -math.inf)
    return torch.log_softmax(logits, -1)


def _rows(history: Tensor, origin: Tensor) -> Tensor:
    """history (B, K, ...) -> the rows ``origin`` (B, K) of each example."""
    index = origin.view(*origin.shape, *[1] * (history.dim() - 2)).expand(-1, -1, *history.shape[2:])
    return history.gather(1, index)


@contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode under ``no_grad``; the model's mode comes back."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def check_options(*, beam_width: int = 1, n_best: int = 1, length_penalty: float = 0.0) -> None:
    """ConfigErrors naming the bad option and the fix."""
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


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
