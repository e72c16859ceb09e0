"""A linear-chain conditional random field over per-step tag scores, and the BIO/BIOES tag rules.

    crf = CRF(num_tags=5, constraints=scheme_constraints(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO"))
    log_p = crf.log_likelihood(emissions, tags, mask)   # (B, T, C), (B, T), (B, T) -> (B,)
    paths = crf.viterbi(emissions, mask)                # one list of tag ids per sequence, its own length

Shape letters as in :mod:`rnnkit`, plus C tags. A path y scores (Lafferty et al. 2001; the output
layer of Lample et al. 2016, sec. 2.2)

    s(y) = start[y_0] + sum_t e[t, y_t] + sum_{t>0} A[y_{t-1}, y_t] + end[y_last]

and p(y) = exp(s(y)) / Z, where Z sums exp(s) over all C^T paths: the forward algorithm computes
log Z in log space, the Viterbi algorithm the best path, both one step at a time over the batch.

A tag scheme names each tag ``<prefix>-<type>`` or ``O``: BIO (IOB2) with prefixes B (begins an
entity) and I (inside it); BIOES adds E (ends one) and S (a one-token entity). ``I-x`` (and ``E-x``)
may only follow ``B-x`` or ``I-x`` of the same type x; under BIOES an entity must close with E or
S before anything else starts. :func:`scheme_constraints` turns these rules into the CRF's allowed
transitions, which it scores as -10,000 (exp of which is 0 even in float64, yet finite, so no NaN
reaches a gradient) in training and decoding alike.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import DataError, ShapeError, unknown_name

SCHEMES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
FORBIDDEN = -10_000.0  # the score of a transition a scheme does not allow


def parse_tag(tag: str, scheme: str) -> tuple[str, str] | None:
    """(prefix, type) of a tag of ``scheme``: "B-PER" -> ("B", "PER"), "O" -> ("O", ""); None for a
    tag the scheme does not have (a prefix outside it, no type, no dash)."""
    if scheme not in SCHEMES:
        raise unknown_name("tag scheme", scheme, SCHEMES)
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash and kind and prefix in SCHEMES[scheme] else None


def transition_allowed(previous: tuple[str, str] | None, tag: tuple[str, str] | None, scheme: str) -> bool:
    """Whether parsed ``tag`` may follow parsed ``previous`` under ``scheme``; None stands for the
    sequence's start (as ``previous``) or its end (as ``tag``)."""
    open_entity = previous is not None and previous[0] in ("B", "I")  # inside an entity, not closed
    if scheme == "BIOES" and open_entity:  # B-x and I-x go on with I-x or close with E-x, nothing else
        return tag is not None and tag[0] in ("I", "E") and tag[1] == previous[1]
    if tag is None:
        return True
    if tag[0] in ("I", "E"):
        return open_entity and tag[1] == previous[1]
    return True


class Constraints(NamedTuple):
    """Allowed transitions, True where allowed: start (C,) first tags, transitions (C, C) from row
    to column, end (C,) last tags."""

    start: Tensor
    transitions: Tensor
    end: Tensor


def scheme_constraints(tags: list[str], scheme: str) -> Constraints:
    """The transitions ``scheme`` allows between ``tags`` (tag names in id order)."""
    parsed = [parse_tag(tag, scheme) for tag in tags]
    bad = [tag for tag, p in zip(tags, parsed, strict=True) if p is None]
    if bad:
        raise DataError(
            f"tags {bad[:5]} are not {scheme} tags (O, or {'/'.join(SCHEMES[scheme])}-<type>): "
            "give the tags' scheme, or none"
        )
    return Constraints(
        torch.tensor([transition_allowed(None, p, scheme) for p in parsed]),
        torch.tensor([[transition_allowed(a, b, scheme) for b in parsed] for a in parsed]),
        torch.tensor([transition_allowed(p, None, scheme) for p in parsed]),
    )


class CRF(nn.Module):
    """Linear-chain CRF: a path's log-probability (training) and the best path (decoding).

    Inputs: emissions (B, T, C) per-step tag scores; tags (B, T) int64 tag ids (anything, e.g. -100,
    on padding); mask (B, T) bool, True on each sequence's real steps: a prefix of its row with
    step 0 real, or None when every step is real.

    Attributes: transitions (C, C) A[from, to]; start (C,) and end (C,) scores of the first and last
    tag; all start at zero. ``constraints`` (:class:`Constraints`, e.g. from
    :func:`scheme_constraints`) scores disallowed transitions as FORBIDDEN; None allows all.

    Example:
        >>> crf = CRF(3)
        >>> emissions, mask = torch.randn(2, 4, 3), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
        >>> crf.log_likelihood(emissions, torch.zeros(2, 4, dtype=torch.long), mask).shape   # (2,)
        >>> crf.viterbi(emissions, mask)             # e.g. [[0, 2, 2, 1], [1, 0]]
    """

    def __init__(self, num_tags: int, constraints: Constraints | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ShapeError(f"a CRF needs num_tags >= 1, got {num_tags}")
        C = self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(C, C))
        self.start = nn.Parameter(torch.zeros(C))
        self.end = nn.Parameter(torch.zeros(C))
        if constraints is None:
            every = torch.ones(C, C, dtype=torch.bool)
            constraints = Constraints(every[0], every, every[0])
        shapes = tuple(tuple(c.shape) for c in constraints)
        if shapes != ((C,), (C, C), (C,)):
            raise ShapeError(f"constraints for {C} tags must be shaped (C,), (C, C), (C,); got {shapes}")
        names = ("allowed_start", "allowed_transitions", "allowed_end")
        for name, allowed in zip(names, constraints, strict=True):  # not saved: rebuilt from the config
            self.register_buffer(name, allowed.bool().clone(), persistent=False)

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """(start (C,), transitions (C, C), end (C,)) with disallowed entries set to FORBIDDEN."""
        return (
            self.start.masked_fill(~self.allowed_start, FORBIDDEN),
            self.transitions.masked_fill(~self.allowed_transitions, FORBIDDEN),
            self.end.masked_fill(~self.allowed_end, FORBIDDEN),
        )

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """:meth:`log_likelihood`, (B,)."""
        return self.log_likelihood(emissions, tags, mask)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """log p(tags | emissions) of each sequence, (B,): its path's score minus log Z."""
        mask = self._check(emissions, mask)
        if tags.shape != emissions.shape[:2]:
            raise ShapeError(f"tags must be (B, T) = {tuple(emissions.shape[:2])}, got {tuple(tags.shape)}")
        return self.path_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """s(tags) of each sequence over its real steps, (B,)."""
        start, transitions, end = self.scores()
        tags = tags.masked_fill(~mask, 0)  # (B, T): padding may hold -100
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        steps = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)  # (B,)
        total = (emitted * mask).sum(1) + (steps * mask[:, 1:]).sum(1)  # (B,)
        return start[tags[:, 0]] + total + end[last]

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """log Z of each sequence, (B,), by the forward algorithm (Rabiner 1989, sec. III.A) in log space."""
        mask = self._check(emissions, mask)
        start, transitions, end = self.scores()
        alpha = start + emissions[:, 0]  # (B, C): log-sum of every path's score ending in each tag
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, 1) + emissions[:, t]  # (B, C)
            alpha = torch.where(mask[:, t, None], step, alpha)  # padded steps keep the last real alpha
        return torch.logsumexp(alpha + end, 1)  # (B,)

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor | None = None) -> list[list[int]]:
        """The highest-scoring tag path of each sequence (Viterbi 1967), as many ids as real steps."""
        mask = self._check(emissions, mask)
        start, transitions, end = self.scores()
        B, T, C = emissions.shape
        keep = torch.arange(C, device=emissions.device).expand(B, C)  # (B, C): a padded step's back-pointer
        delta, pointers = start + emissions[:, 0], []  # (B, C): the best score of a path ending in each tag
        for t in range(1, T):
            best, came_from = (delta.unsqueeze(2) + transitions).max(1)  # (B, C), (B, C)
            delta = torch.where(mask[:, t, None], best + emissions[:, t], delta)
            pointers.append(torch.where(mask[:, t, None], came_from, keep))
        path = [(delta + end).argmax(1)]  # (B,) the last real tag, carried through padding unchanged
        for came_from in reversed(pointers):
            path.append(came_from.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        tags = torch.stack(path[::-1], 1).tolist()  # (B, T)
        return [row[:n] for row, n in zip(tags, mask.sum(1).tolist(), strict=True)]

    def _check(self, emissions: Tensor, mask: Tensor | None) -> Tensor:
        """The mask (B, T) bool, checked against emissions (B, T, C)."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags or 0 in emissions.shape:
            raise ShapeError(
                f"emissions must be (B, T, C) with C = {self.num_tags} tags and B, T >= 1; got "
                f"{tuple(emissions.shape)}"
            )
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ShapeError(f"mask must be (B, T) = {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.bool()
        if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ShapeError(
                "mask must be True on a prefix of each row, step 0 included (each sequence's real "
                "steps, then padding): build it from lengths with rnnkit.functional.masking.lengths_to_mask"
            )
        return mask

    def extra_repr(self) -> str:
        allowed = int(self.allowed_transitions.sum())
        return f"num_tags={self.num_tags}, allowed transitions={allowed}/{self.num_tags**2}"
