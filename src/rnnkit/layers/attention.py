"""Attention of one query over a padded sequence of keys: additive and Luong's three scores.

    attention = build_attention("additive", query_size=64, key_size=128)
    prepared = attention.prepare(keys)                 # keys (B, S, 128): once per sequence
    context, weights = attention(query, keys, mask, prepared=prepared)   # (B, 128), (B, S)

Shape letters as in :mod:`rnnkit`, plus S source steps, Q query features, F key features and A
attention units. Every score is computed for all S steps, then a softmax over the real ones: padding
(``mask`` False) gets exactly zero weight and the weights of a row sum to one. A row with no real
step at all gets zero weights and a zero context (no NaN, no error: checking would cost a device
sync at every decoder step).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError, ShapeError, unknown_name

KINDS = ("additive", "dot", "general", "concat")


class _Attention(nn.Module):
    """What both kinds share: the checks, the masked softmax and the weighted sum."""

    query_size: int
    key_size: int

    def prepare(self, keys: Tensor) -> Tensor:
        """The part of the scores that depends on the keys only, (B, S, F) -> (B, S, *)."""
        raise NotImplementedError

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        """query (B, Q), prepared keys -> unnormalised scores (B, S)."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor | None = None,
        values: Tensor | None = None,
        *,
        prepared: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query (B, Q), keys (B, S, F), mask (B, S) bool True on real steps or None, values (B, S, F')
        or None (the keys) -> (context (B, F'), weights (B, S)).

        ``prepared``: ``self.prepare(keys)`` computed once per sequence; None computes it here.
        """
        self._check(query, keys, mask)
        scores = self.scores(query, self.prepare(keys) if prepared is None else prepared)  # (B, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, -1)  # (B, S)
        if mask is not None:
            weights = weights * mask  # exact zeros on padding, and on a row with no real step
        return torch.einsum("bs,bsf->bf", weights, keys if values is None else values), weights

    def _check(self, query: Tensor, keys: Tensor, mask: Tensor | None) -> None:
        if query.dim() != 2 or query.shape[-1] != self.query_size:
            raise ShapeError(f"query must be (B, Q) with Q = {self.query_size}, got {tuple(query.shape)}")
        if keys.dim() != 3 or keys.shape[0] != query.shape[0] or keys.shape[-1] != self.key_size:
            raise ShapeError(
                f"keys must be (B, S, F) with B = {query.shape[0]} (the query's) and F = {self.key_size}, "
                f"got {tuple(keys.shape)}"
            )
        if mask is not None and (mask.dtype != torch.bool or mask.shape != keys.shape[:2]):
            raise ShapeError(
                f"mask must be bool (B, S) = {tuple(keys.shape[:2])}, True on real steps; got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )


def _tanh_scores(query: Tensor, prepared: Tensor, v: nn.Linear) -> Tensor:
    """v . tanh(query + prepared): query (B, A), prepared (B, S, A) -> (B, S)."""
    return v(torch.tanh(query.unsqueeze(1) + prepared)).squeeze(-1)  # (B, S)


class AdditiveAttention(_Attention):
    """Additive attention (Bahdanau et al. 2015, sec. 3.1 and appendix A.1.2).

    score(q, k_s) = v . tanh(W q + U k_s + b), weights = softmax over the real steps s,
    context = sum_s weights_s k_s (or the values). ``prepare(keys)`` is U k + b, (B, S, A).

    Args:
        query_size: Q, the decoder state's features.
        key_size: F, the features of each key (an encoder output).
        attention_size: A, the hidden units of the score network.

    Attributes: ``query`` W (Q -> A, no bias), ``key`` U and b (F -> A), ``v`` (A -> 1, no bias).
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query_size, self.key_size, self.attention_size = query_size, key_size, attention_size
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key(keys)  # (B, S, A)

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _tanh_scores(self.query(query), prepared, self.v)  # (B, S)


class MultiplicativeAttention(_Attention):
    """Luong et al. 2015's scores (sec. 3.1, eq. 8), for one query over the keys:

    - "dot": q . k_s (needs Q == F), nothing to learn;
    - "general": q . (W k_s), W (F -> Q); ``prepare(keys)`` is W k, (B, S, Q);
    - "concat": v . tanh(W [q; k_s]), W split into its query and key columns (Q -> A, F -> A with the
      bias) so that ``prepare(keys)`` is the key part, (B, S, A).

    ``attention_size`` is A for "concat" (None: Q) and must be None for the others. The weights and
    the context follow as in :class:`AdditiveAttention`.
    """

    def __init__(self, query_size: int, key_size: int, kind: str, attention_size: int | None = None) -> None:
        super().__init__()
        if kind not in KINDS[1:]:
            raise unknown_name("multiplicative attention", kind, KINDS[1:])
        if kind == "dot" and query_size != key_size:
            raise ConfigError(
                f"dot attention needs the query and key sizes equal, got {query_size} and {key_size}: "
                "use 'general' (a learned map between them) or make the sizes equal"
            )
        if attention_size is not None and kind != "concat":
            raise ConfigError(f"attention_size applies to kind 'concat' only, got kind {kind!r}: drop it")
        self.query_size, self.key_size, self.kind = query_size, key_size, kind
        if kind == "general":
            self.key = nn.Linear(key_size, query_size, bias=False)
        elif kind == "concat":
            A = attention_size or query_size
            self.query = nn.Linear(query_size, A, bias=False)
            self.key = nn.Linear(key_size, A)
            self.v = nn.Linear(A, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return keys if self.kind == "dot" else self.key(keys)  # (B, S, F), (B, S, Q) or (B, S, A)

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        if self.kind == "concat":
            return _tanh_scores(self.query(query), prepared, self.v)  # (B, S)
        return torch.einsum("bq,bsq->bs", query, prepared)  # (B, S)

    def extra_repr(self) -> str:
        return repr(self.kind)


def build_attention(
    kind: str, query_size: int, key_size: int, attention_size: int | None = None
) -> AdditiveAttention | MultiplicativeAttention:
    """The attention named ``kind``: "additive" (A = ``attention_size`` or Q), "dot", "general", "concat"."""
    if kind not in KINDS:
        raise unknown_name("attention", kind, KINDS)
    if kind == "additive":
        return AdditiveAttention(query_size, key_size, attention_size or query_size)
    return MultiplicativeAttention(query_size, key_size, kind, attention_size)
