"""Using a trained text classifier: labels with probabilities, and which tokens decided.

    predictor = rnnkit.load("runs/sentiment/bundle")
    predictor.predict(["a gorgeous, witty movie", "dull"])   # [{'label': 'fresh', 'probability': ...}, ...]
    predictor.explain("a gorgeous, witty movie")["attention"]   # one weight per token (attention pooling)

Texts the vocabulary mostly does not know are still labelled, with a warning that names the share
of unknown tokens: the label of a text made only of unknown words is the model's prior, not a reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rnnkit.data import Labels, TextDataset, read_labelled, require_texts
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError, warn_user
from rnnkit.tasks import Predictor
from rnnkit.tasks.classify import probabilities

TABLES = (".csv", ".tsv", ".jsonl")


def _encode(codec: TextCodec, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
    """Token ids of each text, with one warning for texts that are mostly unknown tokens."""
    require_texts(texts)
    ids = [codec.encode(text)[:max_length] for text in texts]
    unk = codec.vocab.unk_id
    shares = [sum(i == unk for i in row) / max(1, len(row)) for row in ids]
    unknown = [i for i, share in enumerate(shares) if share >= 0.5]
    if unknown:
        first = texts[unknown[0]]
        words = ", ".join(repr(t) for t in dict.fromkeys(codec.unknown(first))) or "(none)"
        warn_user(
            f"{len(unknown)} of {len(texts)} text(s) are mostly tokens the vocabulary does not know "
            f"(e.g. {first[:40]!r}: {shares[unknown[0]]:.0%} unknown: {words[:120]}); their labels "
            "say little about them"
        )
    return ids


@torch.no_grad()
def predict_texts(model: torch.nn.Module, texts: Sequence[str], preprocessing: dict[str, Any]) -> list[dict]:
    """For each text: the text, the predicted label(s), its probability and every class's probability."""
    codec = TextCodec.from_state(preprocessing["codec"])
    labels = Labels.from_state(preprocessing["labels"])
    ids = _encode(codec, texts, preprocessing.get("max_length"))
    probs = probabilities(model, TextDataset(ids, torch.zeros(len(ids))), codec.vocab.pad_id)
    return [_labelled(text, p, labels) for text, p in zip(texts, probs, strict=True)]


def _labelled(text: str, p: torch.Tensor, labels: Labels) -> dict:
    """One text's result from its probabilities: () P(class 1) for binary, (C,) otherwise."""
    per_class = [1 - float(p), float(p)] if p.dim() == 0 else p.tolist()
    scores = dict(zip(labels.classes, per_class, strict=True))
    if labels.multilabel:
        chosen = [c for c, v in scores.items() if v >= 0.5]
        return {"text": text, "label": chosen, "probability": max(per_class), "probabilities": scores}
    best = max(scores, key=scores.get)
    return {"text": text, "label": best, "probability": scores[best], "probabilities": scores}


@torch.no_grad()
def explain(model: torch.nn.Module, text: str, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The prediction for ``text`` with its tokens and (attention pooling) each token's weight."""
    codec = TextCodec.from_state(preprocessing["codec"])
    (ids,) = _encode(codec, [text], preprocessing.get("max_length"))
    model.eval()
    device = next(model.parameters()).device
    output = model(torch.tensor([ids], device=device), lengths=torch.tensor([len(ids)]))
    result = predict_texts(model, [text], preprocessing)[0]
    tokens = codec.vocab.decode(ids)
    weights = None if output.attention is None else output.attention[0].float().cpu().tolist()
    return {**result, "tokens": tokens, "attention": weights}


class ClassifyPredictor(Predictor):
    """A trained text classifier: ``predict`` labels, ``explain`` one text's tokens and weights."""

    verbs = (*Predictor.verbs, "predict", "explain", "session")

    def session(self, condition: Any = None) -> ClassifierSession:
        """A text read piece by piece, the recurrence's state carried: the label of everything read
        so far after each piece (models that read forward only, without a convolutional front end)."""
        if condition is not None:
            raise ConfigError("a classifier takes no condition")
        model = self.model
        if model.config.bidirectional or model.conv is not None or model.upper is not None:
            model.read_on(torch.zeros(1, 1, dtype=torch.long))  # raises the ConfigError that says why
        return ClassifierSession(self)

    def predict(self, inputs: str | Sequence[str] | Path, **options) -> dict | list[dict]:
        """The label of one text (a dict), of each text in a list, or of each text in a file: a
        ``.csv``/``.tsv``/``.jsonl`` table (its text column, as in training) or a text file (one per
        line; blank lines skipped)."""
        if options:
            raise ConfigError(
                f"a classifier's predict takes no options (seq2seq models do); got {sorted(options)}"
            )
        if isinstance(inputs, str):
            return predict_texts(self.model, [inputs], self.preprocessing)[0]
        texts = self.read(inputs) if isinstance(inputs, Path) else list(inputs)
        return predict_texts(self.model, texts, self.preprocessing)

    def format(self, result: dict[str, Any]) -> str:
        """label, probability and text, tab-separated (labels of a multi-label text joined by |)."""
        label = "|".join(result["label"]) if isinstance(result["label"], list) else result["label"]
        return f"{label}\t{result['probability']:.3f}\t{result.get('text', '')}"

    def explain(self, inputs: str, **options) -> dict[str, Any]:
        """The prediction for one text, its tokens, and each token's attention weight (None unless
        the model pools by attention)."""
        return explain(self.model, inputs, self.preprocessing)

    def read(self, path: Path) -> list[str]:
        """The texts of a file: a table's text column, or the non-blank lines of a text file."""
        config = self.data_config
        if path.suffix.lower() in TABLES:
            return read_labelled(path, config.text_column, None, config.encoding).texts
        if not path.is_file():
            raise DataError(f"{path} is not a file")
        try:
            content = path.read_text(encoding=config.encoding)
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path} is not {config.encoding.upper()} (byte {error.start}); convert it, e.g. "
                f"iconv -t {config.encoding}"
            ) from None
        texts = [line.strip() for line in content.splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path} holds no text")
        return texts


class ClassifierSession:
    """Text fed in pieces, each read once with the recurrence's state carried on; after each piece,
    the label of all the text so far, as ``predict`` gives for it whole. Each piece is tokenised on
    its own, so cut word-level text at spaces (a character model can be cut anywhere).

        session = predictor.session()
        session.feed("the film was ")   # {"text": "the film was ", "label": ..., "tokens_read": 3, ...}
        session.feed("great")
    """

    def __init__(self, predictor: ClassifyPredictor) -> None:
        self.model, self.preprocessing = predictor.model, predictor.preprocessing
        self.codec = TextCodec.from_state(self.preprocessing["codec"])
        self.labels = Labels.from_state(self.preprocessing["labels"])
        self.read: Any = None
        self.text, self.tokens_read = "", 0

    def feed(self, text: str, top: int | None = None) -> dict[str, Any]:
        """Read ``text`` after everything fed before; the label of all of it (``top`` is ignored: a
        classifier gives every class's probability)."""
        ids = self.codec.encode(text)
        if not ids:
            raise DataError(f"{text!r} encodes to no tokens; feed some text")
        device = next(self.model.parameters()).device
        output, self.read = self.model.read_on(torch.tensor([ids], device=device), self.read)
        head = self.model.config.head
        logits = output.logits[0].float().cpu()
        probs = torch.softmax(logits, -1) if head == "multiclass" else torch.sigmoid(logits)
        self.text, self.tokens_read = self.text + text, self.tokens_read + len(ids)
        return {**_labelled(self.text, probs, self.labels), "tokens_read": self.tokens_read}
