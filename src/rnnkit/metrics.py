"""Metrics (over torchmetrics where it has them) and the baselines every model faces.

Forecasting: errors are measured in the series' own units. MASE divides the MAE by the in-sample
MAE of the seasonal naive forecast on the training part (Hyndman & Koehler 2006); interval coverage
is the share of actual values inside [lower, upper].

Classification: accuracy, macro F1 and confusion matrices from torchmetrics, beside the majority
class and a bag-of-words logistic regression (scikit-learn). Language models: perplexity and bits
per character, beside what ``xz -9`` (LZMA) needs for the same text.

torchmetrics and scikit-learn are imported by the functions that use them: torchmetrics pulls in
scipy.signal and matplotlib (about 3 s on a 2-core machine), which an inference command, whose task
module imports this one, must not pay (benchmarks/startup.py; tests/test_startup.py).
"""

from __future__ import annotations

import lzma
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rnnkit.errors import DataError

BASELINES = ("last_value", "seasonal_naive", "drift", "mean")


def forecast_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    mase_scale: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """MAE, RMSE, MAPE (%), sMAPE (%), MASE and, given bounds, interval coverage (%)."""
    from torchmetrics.functional import (
        mean_absolute_error,
        mean_absolute_percentage_error,
        mean_squared_error,
        symmetric_mean_absolute_percentage_error,
    )

    y = torch.as_tensor(np.ravel(actual), dtype=torch.float64)
    yhat = torch.as_tensor(np.ravel(predicted), dtype=torch.float64)
    mae = float(mean_absolute_error(yhat, y))
    metrics = {
        "MAE": mae,
        "RMSE": float(mean_squared_error(yhat, y, squared=False)),
        "MAPE": 100 * float(mean_absolute_percentage_error(yhat, y)),
        "sMAPE": 100 * float(symmetric_mean_absolute_percentage_error(yhat, y)),
        "MASE": mae / mase_scale,
    }
    if lower is not None and upper is not None:
        metrics["coverage"] = 100 * float(np.mean((actual >= lower) & (actual <= upper)))
    return metrics


def seasonal_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (lag ``season``) over the training values (N,)."""
    if len(train) <= season:
        raise DataError(
            f"MASE needs more than season={season} training values, got {len(train)}; lower the season"
        )
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    return scale if scale > 0 else 1.0


def baseline(name: str, series: np.ndarray, origins: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """Forecasts (S, H) of a baseline from the history ``series[: origin + 1]`` of each origin.

    last_value: the last observation; seasonal_naive: the observation one season before each target
    step (Hyndman & Athanasopoulos, sec. 5.2); drift: the line through the first and last
    observations, extended; mean: the mean of the whole history.
    """
    series = np.asarray(series)
    return baselines_of_many(name, series, np.array([0, len(series)]), np.zeros(len(origins), int), origins,
                             horizon, season)  # fmt: skip


def baselines_of_many(
    name: str,
    values: np.ndarray,
    offsets: np.ndarray,
    series: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    season: int = 1,
) -> np.ndarray:
    """:func:`baseline` for windows of many series at once, without a loop over them.

    values (R,): every series one after another, series i at rows ``offsets[i]`` to ``offsets[i + 1]``;
    series (S,) and origins (S,): each window's series and the row (within it) of its last observation.
    Returns (S, H).
    """
    steps = np.arange(1, horizon + 1)  # (H,)
    start = np.asarray(offsets)[series]  # (S,) each window's series' first row
    at = start + origins  # (S,) the origins' rows in ``values``
    last = values[at][:, None]  # (S, 1)
    if name == "last_value":
        return np.repeat(last, horizon, 1)
    if name == "seasonal_naive":
        back = season * np.ceil(steps / season).astype(int)  # (H,) whole seasons back from each target
        index = origins[:, None] + steps - back  # (S, H) rows within each series
        if (index < 0).any():
            raise DataError(
                f"seasonal naive needs a season ({season}) of history before every forecast origin"
            )
        return values[start[:, None] + index]
    if name == "drift":
        slope = (last[:, 0] - values[start]) / np.maximum(origins, 1)  # (S,)
        return last + slope[:, None] * steps
    if name == "mean":
        sums = np.cumsum(values, dtype=np.float64)  # (R,)
        before = np.where(start > 0, sums[np.maximum(start - 1, 0)], 0.0)  # (S,) sums of earlier series
        return np.repeat(((sums[at] - before) / (origins + 1))[:, None], horizon, 1)
    raise DataError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")


# ---- classification -----------------------------------------------------------------------------


def classification_metrics(
    probabilities: torch.Tensor, targets: torch.Tensor, head: str, num_classes: int
) -> dict[str, Any]:
    """Accuracy, macro F1 and the confusion matrix (rows: true class, columns: predicted) by torchmetrics.

    ``probabilities`` is (N,) for a binary head (of class 1) and (N, C) otherwise; ``targets`` holds
    class ids, or (N, C) 0/1 for a multi-label head (accuracy and F1 then per label, macro-averaged,
    with a confusion matrix (C, 2, 2) per label).
    """
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multilabel_accuracy,
        multilabel_confusion_matrix,
        multilabel_f1_score,
    )

    if head == "multilabel":
        t = targets.long()
        return {
            "accuracy": float(multilabel_accuracy(probabilities, t, num_labels=num_classes)),
            "f1_macro": float(multilabel_f1_score(probabilities, t, num_labels=num_classes)),
            "confusion_matrix": multilabel_confusion_matrix(
                probabilities, t, num_labels=num_classes
            ).tolist(),
        }
    predicted = (probabilities >= 0.5).long() if head == "binary" else probabilities.argmax(-1)
    t = targets.long()
    return {
        "accuracy": float(multiclass_accuracy(predicted, t, num_classes, average="micro")),
        "f1_macro": float(multiclass_f1_score(predicted, t, num_classes, average="macro")),
        "confusion_matrix": multiclass_confusion_matrix(predicted, t, num_classes).tolist(),
    }


def majority_baseline(train_labels: torch.Tensor, test_labels: torch.Tensor, num_classes: int) -> dict:
    """Always predict the training part's most frequent class (single-label tasks)."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    majority = int(torch.bincount(train_labels.long(), minlength=num_classes).argmax())
    predicted = torch.full_like(test_labels.long(), majority)
    return {
        "accuracy": float(multiclass_accuracy(predicted, test_labels.long(), num_classes, average="micro")),
        "f1_macro": float(multiclass_f1_score(predicted, test_labels.long(), num_classes, average="macro")),
    }


def bag_of_words_baseline(
    train_texts: list[str], train_labels: list[int], test_texts: list[str], test_labels: list[int]
) -> dict[str, float]:
    """Logistic regression on word and bigram counts (scikit-learn), the usual text-classification floor.

    Unigrams and bigrams with sublinear TF-IDF weights and scikit-learn's default L2-regularised
    logistic regression (C=1), fitted on the training part only: one standard setting, not tuned.
    """
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        raise DataError("the bag-of-words baseline needs scikit-learn: pip install 'rnnkit[text]'") from None
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    features = vectorizer.fit_transform(train_texts)
    classifier = LogisticRegression(max_iter=2000).fit(features, train_labels)
    predicted = classifier.predict(vectorizer.transform(test_texts))
    return {
        "accuracy": float(accuracy_score(test_labels, predicted)),
        "f1_macro": float(f1_score(test_labels, predicted, average="macro")),
    }


def log_count_ratio(features, positive: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Naive Bayes log-count ratios (Wang & Manning 2012) of binary ``features`` (N, F), sparse or
    dense, for the ``positive`` (N,) bool examples against the rest:
    r = log((p / |p|_1) / (q / |q|_1)), p = alpha + the positives' counts, q = alpha + the others'."""
    positive = np.asarray(positive, dtype=bool)
    p = alpha + np.asarray(features[positive].sum(0)).ravel()
    q = alpha + np.asarray(features[~positive].sum(0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


def nbsvm_baseline(
    train_texts: list[str], train_labels: list[int], test_texts: list[str], test_labels: list[int]
) -> dict[str, float]:
    """NBSVM (Wang & Manning 2012) in its logistic-regression form: binary word and bigram
    features scaled by their naive Bayes log-count ratios, then scikit-learn's L2 logistic
    regression (C=1), one class against the rest for more than two; a strong baseline on short
    texts, untuned. (The paper's SVM with weight interpolation scores within a point of it.)"""
    try:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        raise DataError("the NBSVM baseline needs scikit-learn: pip install 'rnnkit[text]'") from None
    vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True)
    features, labels = vectorizer.fit_transform(train_texts), np.asarray(train_labels)
    test = vectorizer.transform(test_texts)
    classes = np.unique(labels)
    scores = []
    for c in classes[1:] if len(classes) == 2 else classes:  # two classes: one classifier
        ratio = log_count_ratio(features, labels == c)
        classifier = LogisticRegression(max_iter=2000).fit(features.multiply(ratio).tocsr(), labels == c)
        scores.append(classifier.decision_function(test.multiply(ratio).tocsr()))
    if len(classes) == 2:
        predicted = np.where(scores[0] > 0, classes[1], classes[0])
    else:
        predicted = classes[np.argmax(np.stack(scores), axis=0)]
    return {
        "accuracy": float(accuracy_score(test_labels, predicted)),
        "f1_macro": float(f1_score(test_labels, predicted, average="macro")),
    }


# ---- language models ----------------------------------------------------------------------------


def language_model_metrics(total_nats: float, tokens: int, characters: int) -> dict[str, float]:
    """Cross-entropy per token, perplexity, and bits per character of the text those tokens spell."""
    if tokens < 1 or characters < 1:
        raise DataError(f"language-model metrics need text; got {tokens} tokens and {characters} characters")
    per_token = total_nats / tokens
    return {
        "cross_entropy": per_token,
        "perplexity": math.exp(min(per_token, 700.0)),
        "bits_per_character": total_nats / math.log(2) / characters,
        "tokens": tokens,
        "characters": characters,
    }


def xz_bits_per_character(text: str) -> float:
    """Bits per character that ``xz -9`` (LZMA2, preset 9, the .xz container) needs for ``text``."""
    if not text:
        raise DataError("xz_bits_per_character needs a non-empty text")
    return 8 * len(lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=9)) / len(text)


# ---- sequences: seq2seq and tagging ---------------------------------------------------------------


def _optional(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise DataError(f"these metrics need {package}: pip install 'rnnkit[{extra}]'") from None


def sequence_metrics(
    hypotheses: list[list[str]], references: list[list[list[str]]], detokenize=" ".join
) -> dict[str, float]:
    """How far output token sequences are from their references; each example may have several.

    - ``sequence_error_rate``: the share of outputs equal to none of their references (in
      grapheme-to-phoneme work, the "word error rate": each example is a word);
    - ``token_error_rate``: Levenshtein edits (rapidfuzz) from each output to its closest reference,
      summed, over those references' tokens summed ("phoneme error rate" for phonemes, "word error
      rate" in speech and translation, where a token is a word);
    - ``char_error_rate``: the same over the characters of the texts, ``detokenize(tokens)`` (pass
      the target tokeniser's: "".join for characters, the subword decoder for bpe);
    - ``bleu``: corpus BLEU of those texts (sacrebleu, its 13a tokenisation, all references), 0-100.
    """
    if not hypotheses or len(hypotheses) != len(references):
        raise DataError(
            f"sequence metrics need one or more outputs, each with references; got "
            f"{len(hypotheses)} outputs and {len(references)} reference lists"
        )
    if any(not refs for refs in references):
        raise DataError("every output needs at least one reference")
    distance = _optional("rapidfuzz.distance", "seq2seq").Levenshtein.distance
    wrong = token_edits = token_total = char_edits = char_total = 0
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        wrong += all(list(hypothesis) != list(ref) for ref in refs)
        edits, ref = min((distance(hypothesis, ref), ref) for ref in refs)
        token_edits, token_total = token_edits + edits, token_total + len(ref)
        text, texts = detokenize(hypothesis), [detokenize(r) for r in refs]
        edits, ref_text = min((distance(text, r), r) for r in texts)
        char_edits, char_total = char_edits + edits, char_total + len(ref_text)
    sacrebleu = _optional("sacrebleu", "seq2seq")
    width = max(map(len, references))  # sacrebleu skips None where a source has fewer references
    streams = [[detokenize(refs[i]) if i < len(refs) else None for refs in references] for i in range(width)]
    bleu = sacrebleu.corpus_bleu([detokenize(h) for h in hypotheses], streams).score
    return {
        "sequence_error_rate": wrong / len(hypotheses),
        "token_error_rate": token_edits / max(token_total, 1),
        "char_error_rate": char_edits / max(char_total, 1),
        "bleu": float(bleu),
        "examples": len(hypotheses),
    }


def nearest_neighbour_outputs(train_sources: list[str], train_targets: list, sources: list[str]) -> list:
    """For each source, the target of the training source nearest to it in Levenshtein distance
    (rapidfuzz, ties to the first): a translation-memory baseline that needs no model."""
    rapidfuzz = _optional("rapidfuzz", "seq2seq")
    from rapidfuzz.distance import Levenshtein

    outputs = []
    for start in range(0, len(sources), 128):  # (128, N_train) int32 distances at a time
        block = rapidfuzz.process.cdist(
            sources[start : start + 128],
            train_sources,
            scorer=Levenshtein.distance,
            dtype=np.int32,
            workers=-1,
        )  # (b, N_train)
        outputs += [train_targets[i] for i in block.argmin(1)]
    return outputs


def tagging_metrics(
    true: list[list[str]], predicted: list[list[str]], scheme: str | None
) -> dict[str, float]:
    """Token accuracy; with a BIO or BIOES ``scheme``, entity-level precision, recall and F1 as well
    (seqeval in strict mode: an entity counts when its type and both boundaries are right)."""
    if len(true) != len(predicted) or any(len(t) != len(p) for t, p in zip(true, predicted, strict=False)):
        raise DataError("tagging metrics need one predicted tag per true tag, sentence by sentence")
    total = sum(map(len, true))
    if not total:
        raise DataError("tagging metrics need at least one tagged token")
    right = sum(a == b for t, p in zip(true, predicted, strict=True) for a, b in zip(t, p, strict=True))
    metrics = {"accuracy": right / total, "tokens": total, "sentences": len(true)}
    if scheme is None:
        return metrics
    seqeval = _optional("seqeval.metrics", "tagging")
    schemes = _optional("seqeval.scheme", "tagging")
    mode = {"BIO": schemes.IOB2, "BIOES": schemes.IOBES}[scheme]
    options = {"mode": "strict", "scheme": mode, "zero_division": 0}
    metrics.update(
        precision=float(seqeval.precision_score(true, predicted, **options)),
        recall=float(seqeval.recall_score(true, predicted, **options)),
        f1=float(seqeval.f1_score(true, predicted, **options)),
    )
    return metrics


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Recall@k and MRR@k of next-item predictions from the 0-based rank of each true item (N,)
    among the candidates (-1 or any rank >= k: not in the top k). MRR@k averages 1 / (rank + 1) over
    all predictions, 0 where the true item is not in the top k (as GRU4Rec reports it)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise DataError(f"ranks must be one rank per prediction (N,), N >= 1; got shape {ranks.shape}")
    out = {}
    for k in ks:
        hit = (ranks >= 0) & (ranks < k)
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float((hit / np.maximum(ranks + 1.0, 1.0)).mean())  # 0 where missed
    return out


def confusion_lines(classes: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> list[str]:
    """A confusion matrix as table lines: ``title``, the predicted classes across, the true ones down."""
    width = max(9, *(len(c) + 1 for c in classes))
    lines = [
        f"\n{title} (rows: true, columns: predicted):",
        " " * (width + 2) + "".join(f"{c:>{width}}" for c in classes),
    ]
    for name, row in zip(classes, matrix, strict=True):
        lines.append(f"  {name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return lines
