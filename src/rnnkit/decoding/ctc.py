"""Decoding CTC outputs (Graves et al. 2006): per-frame label distributions to label sequences.

    labels = ctc_greedy(log_probs, lengths)                  # best path: argmax per frame, merged
    best = ctc_prefix_beam(log_probs[0], beam_width=8)       # [(labels, log probability), ...] best first

``log_probs`` are (B, T, C) or (T, C) log-probabilities over C classes, class ``blank`` (0 by
default) the CTC blank. A path maps to a label sequence by merging repeated classes and then
dropping blanks: ``a a _ a b b`` is ``a a b``. Greedy decoding takes the most likely class at each
frame (the best path, not always the best labelling); prefix beam search sums the probabilities of
every path of a prefix and keeps the ``beam_width`` most likely prefixes (Hannun et al. 2014,
without a language model), so its best answer is the most likely labelling when the beam is wide
enough (tested against enumerating all paths).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import ShapeError


def collapse(path: list[int] | np.ndarray, blank: int = 0) -> list[int]:
    """The labelling of a path: repeats merged, then blanks dropped."""
    out, previous = [], None
    for c in np.asarray(path).tolist():
        if c != previous and c != blank:
            out.append(c)
        previous = c
    return out


def ctc_greedy(log_probs: Tensor, lengths=None, blank: int = 0) -> list[list[int]]:
    """The best-path labelling of each sequence of a batch (B, T, C) (or one (T, C) sequence)."""
    if log_probs.dim() == 2:
        log_probs = log_probs.unsqueeze(0)
    if log_probs.dim() != 3:
        raise ShapeError(f"log_probs must be (B, T, C) or (T, C), got shape {tuple(log_probs.shape)}")
    B, T, _ = log_probs.shape
    lengths = [T] * B if lengths is None else torch.as_tensor(lengths).tolist()
    best = log_probs.argmax(-1).cpu().numpy()  # (B, T)
    return [collapse(best[b, : lengths[b]], blank) for b in range(B)]


def ctc_prefix_beam(log_probs: Tensor, beam_width: int = 8, blank: int = 0) -> list[tuple[list[int], float]]:
    """The ``beam_width`` most likely labellings of one sequence (T, C), each with its log probability
    (the log of the summed probabilities of its paths), most likely first."""
    if log_probs.dim() != 2:
        raise ShapeError(
            f"prefix beam search decodes one sequence (T, C), got shape {tuple(log_probs.shape)}"
        )
    if beam_width < 1:
        raise ShapeError(f"beam_width must be at least 1, got {beam_width}")
    frames = log_probs.double().cpu().numpy()  # (T, C)
    # each prefix: log P(paths ending in blank), log P(paths ending in its last label)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for frame in frames:
        following: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            entry = following[prefix]  # a blank: the prefix stays, now ending in blank
            entry[0] = np.logaddexp(entry[0], total + frame[blank])
            last = prefix[-1] if prefix else None
            if last is not None:  # the last label repeated without a blank between: merged
                entry[1] = np.logaddexp(entry[1], p_label + frame[last])
            for c in range(len(frame)):
                if c == blank:
                    continue
                longer = following[(*prefix, c)]
                # a repeat of the last label extends the prefix only after a blank
                source = p_blank if c == last else total
                longer[1] = np.logaddexp(longer[1], source + frame[c])
        ranked = sorted(following.items(), key=lambda item: -np.logaddexp(*item[1]))
        beams = {prefix: (p[0], p[1]) for prefix, p in ranked[:beam_width]}
    results = [(list(prefix), float(np.logaddexp(*p))) for prefix, p in beams.items()]
    return sorted(results, key=lambda item: -item[1])
