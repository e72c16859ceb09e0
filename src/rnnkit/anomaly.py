"""Anomaly scores to flags to events, and how well flagged events match labelled ones.

    scores = smooth(scores, 256)                        # optional: a stretch outweighs a single spike
    scale = robust_scale(scores[clean])                 # median and IQR of a clean validation part
    z = normalise(scores, scale)                        # scores in units of the clean part's spread
    threshold = quantile_threshold(z[clean], 0.99)      # or iqr_threshold, best_f1_threshold(z, y)
    flags = z > threshold
    events(flags)                                       # [(start, end), ...], end exclusive
    detection_metrics(flags, labels)                    # per point, per event and point-adjusted P/R/F1

Two ways of counting, and a third reported only beside them:

- **per point**: every time step is a classification (torchmetrics' binary precision, recall, F1);
- **per event**: runs of consecutive flagged steps and of labelled steps are events. A labelled
  event is found when a flagged step falls inside it (recall = found / labelled events); a flagged
  event is right when it overlaps a labelled one (precision = right / flagged events);
- **point-adjusted** (Xu et al. 2018): one flagged step in a labelled event counts the whole event
  as flagged, then points are scored. It inflates scores, a random detector included (Kim et al.
  2022), so it is never reported alone.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from rnnkit.errors import DataError


def events(flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in ``flags`` (N,) as (start, end) pairs, end exclusive, in order."""
    flags = np.asarray(flags, dtype=bool)
    if flags.ndim != 1:
        raise DataError(f"flags must be one value per time step (N,), got shape {flags.shape}")
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def merge_gaps(flags: np.ndarray, gap: int) -> np.ndarray:
    """``flags`` with runs closer than ``gap`` steps joined into one (a heartbeat's two flagged peaks)."""
    merged = np.asarray(flags, dtype=bool).copy()
    runs = events(merged)
    for (_, end), (start, _) in itertools.pairwise(runs):
        if start - end < gap:
            merged[end:start] = True
    return merged


def smooth(scores: np.ndarray, steps: int) -> np.ndarray:
    """The centred moving mean of ``scores`` (N,) over ``steps`` steps (i - steps // 2 up to, not
    including, i - steps // 2 + steps); NaN where that span runs past either end or holds a NaN.
    0 or 1 leaves the scores as they are.

    A model rebuilds or forecasts some sharp, normal features badly (a heartbeat's R peak), and
    those single steps outscore a whole stretch of unusual ones; over a stretch of ``steps``
    (Hundman et al. 2018 smooth their errors likewise) the stretch shows. A shorter span at the
    ends would weigh an edge's few steps more than a full span does, so the ends go unscored.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if steps < 0 or scores.ndim != 1:
        raise DataError(f"smoothing takes scores (N,) and steps >= 0, got {scores.shape} and {steps}")
    out = np.full(len(scores), np.nan)
    if steps <= 1 or len(scores) < steps:
        return scores if steps <= 1 else out
    means = np.lib.stride_tricks.sliding_window_view(scores, steps).mean(-1)  # NaN where a NaN is in
    out[steps // 2 : steps // 2 + len(means)] = means
    return out


def robust_scale(clean: np.ndarray) -> tuple[float, float]:
    """(median, IQR) of scores on a part known to be clean; IQR 0 becomes 1 (a constant part)."""
    clean = _finite(clean, "clean scores")
    q25, median, q75 = np.percentile(clean, [25, 50, 75])
    return float(median), float(q75 - q25) or 1.0


def normalise(scores: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Scores in units of the clean part's spread: (score - median) / IQR."""
    median, spread = scale
    return (np.asarray(scores, dtype=np.float64) - median) / spread


def quantile_threshold(clean: np.ndarray, q: float) -> float:
    """The ``q`` quantile of scores on a clean part: about 1 - q of clean steps are flagged."""
    if not 0 < q < 1:
        raise DataError(f"the quantile must lie in (0, 1), got {q}")
    return float(np.quantile(_finite(clean, "clean scores"), q))


def iqr_threshold(clean: np.ndarray, k: float = 1.5) -> float:
    """Tukey's fence on a clean part: the 75th percentile plus ``k`` interquartile ranges."""
    q25, q75 = np.percentile(_finite(clean, "clean scores"), [25, 75])
    return float(q75 + k * (q75 - q25))


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray, per: str = "event") -> float:
    """The threshold among the scores' quantiles that maximises F1 (``per`` "event" or "point") on
    labelled validation data; ties go to the highest threshold."""
    scores, labels = _finite(scores, "scores"), np.asarray(labels, dtype=bool)
    if not labels.any():
        raise DataError("choosing a threshold by F1 needs validation data with labelled anomalies")
    candidates = np.unique(np.quantile(scores, np.linspace(0.5, 0.9995, 200)))
    best, chosen = -1.0, float(candidates[-1])
    for threshold in candidates[::-1]:
        f1 = detection_metrics(scores > threshold, labels)[per]["f1"]
        if f1 > best:
            best, chosen = f1, float(threshold)
    return chosen


def detection_metrics(flags: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per point, per event and point-adjusted (module docs)."""
    flags, labels = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
    if flags.shape != labels.shape or flags.ndim != 1:
        raise DataError(f"flags {flags.shape} and labels {labels.shape} must both be (N,)")
    adjusted = flags.copy()
    for start, end in events(labels):
        if flags[start:end].any():
            adjusted[start:end] = True
    return {
        "point": _point(flags, labels),
        "event": _event(flags, labels),
        "point_adjusted": _point(adjusted, labels),
    }


def _point(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from torchmetrics.functional.classification import binary_f1_score, binary_precision, binary_recall

    preds, target = torch.from_numpy(flags.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
    return {
        "precision": float(binary_precision(preds, target)),
        "recall": float(binary_recall(preds, target)),
        "f1": float(binary_f1_score(preds, target)),
    }


def _event(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    flagged, labelled = events(flags), events(labels)
    found = sum(bool(flags[start:end].any()) for start, end in labelled)
    right = sum(bool(labels[start:end].any()) for start, end in flagged)
    precision = right / len(flagged) if flagged else 0.0
    recall = found / len(labelled) if labelled else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "events": len(labelled),
        "flagged": len(flagged),
    }


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise DataError(f"{what} are empty")
    if not np.isfinite(values).all():
        raise DataError(f"{what} hold NaN or infinity")
    return values
