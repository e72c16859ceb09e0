"""Language modelling: a plain-text corpus -> token ids on disk -> a LanguageModel over a token stream.

The corpus is a text file (or a text a Debian package ships, :mod:`rnnkit.data.english`), split
by position into training, validation and test parts at line breaks, each encoded chunk by chunk
into a memory-mapped file of token ids, so a corpus larger than memory trains. The model reads
``batch_size`` rows of the stream in parallel with its state carried from batch to batch
(truncated BPTT); the test part is scored with the state carried through it, in bits per
character of the test text, beside what ``xz -9`` needs for the same text.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from rnnkit.config import Config
from rnnkit.data import TokenStream, corpus_chunks, encode_corpus
from rnnkit.data.english import DATASETS, bible_kjv, gcide  # noqa: F401 (bible_kjv, gcide: re-exported)
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError
from rnnkit.files import cache_dir as shared_cache
from rnnkit.files import locked
from rnnkit.metrics import language_model_metrics, xz_bits_per_character
from rnnkit.models.language import CONDITION_KEYS
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task
from rnnkit.tasks.pretrained import codec_state, copy_language_model, language_model_keys


class CorpusDataConfig(Config):
    """Where the corpus comes from, how it becomes tokens, and how the stream is cut."""

    path_keys: ClassVar = ("path", "cache_dir", "start_from")  # relative paths: from the config's folder
    kind: Literal["corpus"] = "corpus"
    path: str | None = Field(None, description="a plain-text file (relative to the config file)")
    dataset: Literal["bible_kjv", "gcide"] | None = Field(
        None,
        description="a text a Debian package ships: bible_kjv (the King James Bible, bible-kjv) or gcide "
        "(the definitions and quotations of the GNU Collaborative International Dictionary of English, "
        "dict-gcide)",
    )
    encoding: str = "utf-8"
    level: Literal["char", "word", "bpe"] = "char"
    lower: bool = False
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, gt=4)
    bpe_vocab_size: int = Field(8000, gt=4)
    seq_len: int = Field(100, gt=1, description="tokens per row of each batch (the BPTT length)")
    test: float = Field(0.05, gt=0, lt=1, description="fraction of the corpus, at its end, for testing")
    validation: float = Field(0.05, ge=0, lt=1, description="the fraction just before the test part")
    eval_rows: int = Field(16, gt=0, description="parallel rows when scoring validation and test text")
    start_from: str | None = Field(
        None,
        description="a language-model bundle to train on from (ULMFiT's second stage: a general model "
        "adapted to this text): its codec encodes the text (level and vocabulary keys are ignored), its "
        "weights start the model, and its model keys are fixed but for the dropouts",
    )
    cache_dir: str | None = Field(
        None, description="where token ids go (default: $RNNKIT_CACHE or ~/.cache/rnnkit)"
    )

    @model_validator(mode="after")
    def _one_source(self):
        if self.path is not None and self.dataset is not None:
            raise ValueError("set only one of data.path and data.dataset")
        if self.test + self.validation >= 1:
            raise ValueError(
                f"data.test + data.validation must leave text for training, got {self.test + self.validation}"
            )
        return self


def cache_dir(config: CorpusDataConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else shared_cache()


def corpus_file(config: CorpusDataConfig) -> Path:
    """The corpus as a text file on disk (the Bible is extracted once from Debian's package)."""
    if config.path is not None:
        path = Path(config.path)
        if not path.is_file():
            raise DataError(f"corpus file {str(path)!r} does not exist")
        return path
    if config.dataset is not None:
        return DATASETS[config.dataset](cache_dir(config))
    raise DataError("no corpus: set data.path (a text file) or data.dataset")


def split_corpus(path: Path, config: CorpusDataConfig, out: Path) -> dict[str, Path]:
    """Write the training, validation and test parts by position, each cut at a line break.

    The text is streamed block by block, and checked to decode in ``config.encoding`` on the way.
    """
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"corpus file {path} is empty")
    cuts = [1 - config.test - config.validation, 1 - config.test]
    parts = {name: out / f"{name}.txt" for name in ("train", "validation", "test")}
    out.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as source:
        offsets = [0]
        for fraction in cuts:
            offsets.append(_boundary(source, max(int(size * fraction), offsets[-1]), size))
        offsets.append(size)
        decoder = codecs.getincrementaldecoder(config.encoding)()  # checked while copying, once
        lines = 1
        for target, start, end in zip(parts.values(), offsets, offsets[1:], strict=False):
            source.seek(start)
            with target.open("wb") as sink:
                left = end - start
                while left > 0:
                    at = source.tell()
                    block = source.read(min(left, 1 << 22))
                    try:
                        decoder.decode(block, final=left == len(block) and end == size)
                    except UnicodeDecodeError as error:
                        where, line = at + error.start, lines + block[: error.start].count(b"\n")
                        raise DataError(
                            f"{path} is not valid {config.encoding}: byte {block[error.start]:#04x} "
                            f"at offset {where} (line {line}) cannot be decoded; "
                            "set data.encoding (e.g. latin-1 or cp1252) or save the file as utf-8"
                        ) from None
                    lines += block.count(b"\n")
                    sink.write(block)
                    left -= len(block)
    for name in ("train", "test"):
        if parts[name].stat().st_size == 0:
            raise DataError(f"the {name} part of {path} is empty: the corpus is too short for data.test")
    return parts


def _boundary(source, position: int, size: int) -> int:
    """The first cut at or after ``position`` that starts a line (or, in a text without line breaks,
    a word), so no line, word or multi-byte character is split between parts."""
    if position <= 0 or position >= size:
        return min(max(position, 0), size)
    source.seek(position - 1)
    window = source.read(1 << 20)
    for mark in (b"\n", b" "):
        found = window.find(mark)
        if found >= 0:
            return min(position + found, size)  # just after the mark (the window starts one byte early)
    if position - 1 + len(window) >= size:
        return size
    raise DataError(
        f"{source.name} has no line break or space within 1 MiB of byte {position}: cannot split it"
    )


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(kw_only=True)
class CorpusPrepared(Prepared):
    codec: TextCodec
    test_text: Path  # the evaluated text, for characters and the xz baseline
    test_tokens: int
    encoding: str


def prepare(
    config: CorpusDataConfig,
    preprocessing: dict[str, Any] | None = None,
    path: str | Path | None = None,
    batch_size: int = 32,
) -> CorpusPrepared:
    """Token streams for training (``batch_size`` rows) and for validation and test (``eval_rows``).

    The parts, the fitted codec and the token ids are cached under ``data.cache_dir``, keyed by the
    corpus file (path, size, modification time) and the options that shape them, and reused by later
    runs, evaluations and the other processes of a distributed run.
    """
    source = Path(path) if path is not None else corpus_file(config)
    if not source.is_file():
        raise DataError(f"corpus file {str(source)!r} does not exist")
    stat = source.stat()
    corpus_key = [str(source.resolve()), stat.st_size, stat.st_mtime_ns, config.encoding]
    split_key = [] if path is not None else [config.test, config.validation]
    work = cache_dir(config) / "corpora" / _digest(corpus_key, split_key)
    with locked(work):
        if path is not None:  # a file given with a trained model is scored whole
            parts = {"test": source}
        elif (work / "split.done").is_file():
            parts = {name: work / f"{name}.txt" for name in ("train", "validation", "test")}
        else:
            parts = split_corpus(source, config, work)
            (work / "split.done").touch()
        if preprocessing is None and config.start_from is not None:
            codec = TextCodec.from_state(codec_state(config.start_from))
            preprocessing = {"codec": codec.state_dict()}
        elif preprocessing is None:
            fit = config.model_dump(include={"level", "lower", "min_freq", "max_vocab", "bpe_vocab_size"})
            fitted = work / f"codec-{_digest(fit)}.json"
            if fitted.is_file():
                codec = TextCodec.from_state(json.loads(fitted.read_text()))
            else:
                codec = TextCodec.fit(
                    corpus_chunks(parts["train"], config.encoding),  # streamed, never read whole
                    level=config.level,
                    lower=config.lower,
                    min_freq=config.min_freq,
                    max_size=config.max_vocab,
                    bpe_vocab_size=config.bpe_vocab_size,
                )
                fitted.write_text(json.dumps(codec.state_dict()))
            preprocessing = {"codec": codec.state_dict()}
        else:
            codec = TextCodec.from_state(preprocessing["codec"])
        encoded = work / f"ids-{_digest(preprocessing['codec'])}"
        ids = {}
        for name, part in parts.items():
            done = encoded / f"{name}.done"
            if done.is_file():
                ids[name] = np.memmap(encoded / f"{name}.ids", dtype=done.read_text().strip(), mode="r")
            else:
                ids[name] = encode_corpus(part, codec, encoded / f"{name}.ids", encoding=config.encoding)
                done.write_text(str(ids[name].dtype))
    rows = {"train": batch_size, "validation": config.eval_rows, "test": config.eval_rows}
    streams = {}
    for name, tokens in ids.items():
        if len(tokens) < rows[name] * 2 + 1:
            if name == "validation":
                continue
            option = "train.batch_size" if name == "train" else "data.eval_rows"
            raise DataError(
                f"the {name} part ({parts[name]}) has {len(tokens)} tokens, too few for {rows[name]} "
                f"rows of at least 2: use a longer text or a smaller {option}"
            )
        streams[name] = TokenStream(tokens, rows[name], config.seq_len)
    return CorpusPrepared(
        train=streams.get("train"),
        validation=streams.get("validation"),
        test=streams["test"],
        preprocessing=preprocessing,
        part=f"all of {source}" if path is not None else "test part",
        codec=codec,
        test_text=parts["test"],
        test_tokens=len(ids["test"]),
        encoding=config.encoding,
    )


@torch.no_grad()
def score(model: torch.nn.Module, stream: TokenStream, unk_id: int = 1) -> tuple[float, int, int]:
    """Total cross-entropy (nats), tokens scored and how many of them were unknown, over a stream
    read in order with the state carried through it."""
    model.eval()
    device = next(model.parameters()).device
    total, count, unknown, state = 0.0, 0, 0, None
    for batch in stream:
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)
        logits, state = model(inputs, state)
        nats = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), reduction="sum"
        )
        total += float(nats)
        count += targets.numel()
        unknown += int((targets == unk_id).sum())
    return total, count, unknown


def evaluate(model: torch.nn.Module, prepared: CorpusPrepared) -> dict[str, Any]:
    """Perplexity and bits per character on the test text, beside ``xz -9`` on the same text.

    The stream scores every test token but the first of each row (and a short tail); the characters
    are counted in the same share: exactly at character level, at the text's average for words and
    subwords. A token the vocabulary does not know is scored as ``<unk>``, which costs the model
    nothing for spelling it: with unknown tokens in the test text, bits per character is a lower
    bound and the table says so.
    """
    text = Path(prepared.test_text).read_text(encoding=prepared.encoding)
    codec = prepared.codec
    total, count, unknown = score(model, prepared.test, codec.vocab.unk_id)
    characters = max(1, round(len(text) * count / prepared.test_tokens))
    results = language_model_metrics(total, count, characters)
    results["unknown_tokens"] = unknown
    results["xz_bits_per_character"] = xz_bits_per_character(text)
    results["test_characters"] = len(text)
    results["part"] = prepared.part
    return results


def metrics_table(results: dict[str, Any]) -> str:
    lines = [
        f"{results.get('part', 'test part')}: {results['test_characters']:,} characters, "
        f"{results['tokens']:,} tokens scored",
        f"  {'':<24}{'bits/char':>10}{'perplexity':>12}",
        f"  {'model':<24}{results['bits_per_character']:>10.3f}{results['perplexity']:>12.3f}",
        f"  {'xz -9 (LZMA)':<24}{results['xz_bits_per_character']:>10.3f}",
    ]
    if results.get("unknown_tokens"):
        share = 100 * results["unknown_tokens"] / results["tokens"]
        lines.append(
            f"  {results['unknown_tokens']:,} test tokens ({share:.2f}%) are unknown to the vocabulary: the "
            "model's bits per character is a lower bound (raise data.max_vocab or use level char or bpe)"
        )
    return "\n".join(lines)


class LanguageModelTask(Task[CorpusDataConfig, CorpusPrepared]):
    """Predict the next token of a text; generate text from a prompt."""

    name = "language_model"
    data_config = CorpusDataConfig
    default_model = "language_model"
    preprocessing_keys = ("codec",)
    fitted_keys: ClassVar = {"vocab_size": "the vocabulary fitted on the training text"}

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> CorpusPrepared:
        """The training stream's rows are the batch: ``batch_size`` parallel rows."""
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        fixed, suggested = ({}, {}) if config.start_from is None else language_model_keys(config.start_from)
        fixed.pop("vocab_size", None)
        if prepared is not None:
            fixed["vocab_size"] = len(prepared.codec.vocab)
        return ModelKeys(fixed, suggested)

    def check_model(self, model, prepared) -> None:
        """A corpus holds no conditions to train a conditioned model on (the model takes them: see
        :mod:`rnnkit.models.conditioning`, and the caption task for a task that trains one)."""
        given = [key for key in CONDITION_KEYS if model.get(key)]
        if given:
            raise ConfigError(
                f"model.{given[0]}: the language_model task trains on a plain corpus, which holds no "
                "condition for each text: drop the condition keys (the caption task trains a conditioned "
                "decoder; from Python, model.loss(inputs, targets, condition=...) trains one)"
            )

    def initialize(self, model, prepared, config, log) -> None:
        """Start every weight from the language model ``data.start_from`` names."""
        if config.start_from is not None:
            copied = copy_language_model(model, config.start_from)
            log(f"all {copied} tensors from the language model {config.start_from}")

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.language_use import LanguageModelPredictor

        return LanguageModelPredictor(self, bundle)


register_task(LanguageModelTask())
