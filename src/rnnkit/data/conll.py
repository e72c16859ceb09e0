"""Tagged sentences: CoNLL column files, tag schemes, and the codec that turns them into id datasets.

    sentences = read_conll("train.conll", token_column=0, tag_column=-1)   # TaggedSentences
    check_scheme(sentences, "BIO")        # a DataError naming a tag or a transition BIO does not have
    codec = TagCodec.fit(sentences, lower=False, max_word_length=20)
    dataset = codec.dataset(sentences)    # items (word and char ids (T_i, 1 + W), tag ids (T_i,))
    write_conll(sentences, "copy.conll")

A CoNLL file holds one token a line in whitespace-separated columns (the token in one, its tag in
another), a blank line after each sentence; ``-DOCSTART-`` lines (document breaks) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.encoding import _decoded, _some
from rnnkit.data.pairs import PairDataset
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError
from rnnkit.layers.crf import SCHEMES, parse_tag, transition_allowed


@dataclass
class TaggedSentences:
    """Sentences as token lists, each with one tag per token; ``origin`` and ``lines`` (each
    sentence's first line in it) say where they came from, for messages."""

    tokens: list[list[str]]
    tags: list[list[str]]
    origin: str = "the sentences"
    lines: list[int] | None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise DataError(f"{self.origin}: {len(self.tokens)} token lists but {len(self.tags)} tag lists")
        for i, (tokens, tags) in enumerate(zip(self.tokens, self.tags, strict=True)):
            if not tokens:
                raise DataError(f"{self.where(i)} is empty: give every sentence at least one token")
            if len(tokens) != len(tags):
                raise DataError(
                    f"{self.where(i)} has {len(tokens)} tokens but {len(tags)} tags: give one tag per token"
                )

    def __len__(self) -> int:
        return len(self.tokens)

    def where(self, i: int) -> str:
        """Sentence ``i`` for a message: "sentence 3 (line 12) of train.conll"."""
        line = f" (line {self.lines[i]})" if self.lines else ""
        return f"sentence {i + 1}{line} of {self.origin}"

    def take(self, rows: Sequence[int]) -> TaggedSentences:
        lines = None if self.lines is None else [self.lines[i] for i in rows]
        return TaggedSentences(
            [self.tokens[i] for i in rows], [self.tags[i] for i in rows], self.origin, lines
        )


def read_conll(
    path: str | Path, token_column: int = 0, tag_column: int = -1, encoding: str = "utf-8"
) -> TaggedSentences:
    """The sentences of a CoNLL column file; columns count from 0, negative ones from the end.

    Raises DataError naming the lines with too few columns, and for a file with no sentences.
    """
    path = Path(path)
    tokens, tags, lines, bad, sentence = [], [], [], [], []
    for number, line in enumerate([*_decoded(path, encoding).split("\n"), ""], 1):
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            n = len(fields)
            if -n <= token_column < n and -n <= tag_column < n and token_column % n != tag_column % n:
                sentence.append((number, fields[token_column], fields[tag_column]))
            else:
                bad.append(number)
        elif sentence:
            tokens.append([token for _, token, _ in sentence])
            tags.append([tag for _, _, tag in sentence])
            lines.append(sentence[0][0])
            sentence = []
    if bad:
        raise DataError(
            f"{path.name}: lines {_some(bad)} have too few columns for token_column {token_column} and "
            f"tag_column {tag_column} (whitespace-separated): fix them, or set the columns"
        )
    if not tokens:
        raise DataError(
            f"{path} holds no sentences: expected a token and its tag on each line, a blank line after "
            "each sentence (CoNLL columns)"
        )
    return TaggedSentences(tokens, tags, str(path), lines)


def write_conll(sentences: TaggedSentences, path: str | Path, encoding: str = "utf-8") -> Path:
    """``token tag`` lines, a blank line after each sentence; written whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = zip(sentences.tokens, sentences.tags, strict=True)
    blocks = ("".join(f"{a} {b}\n" for a, b in zip(*pair, strict=True)) for pair in pairs)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text("\n".join(blocks), encoding=encoding)
    partial.replace(path)
    return path


def check_scheme(sentences: TaggedSentences, scheme: str | None) -> None:
    """A DataError naming the first tag, or transition between tags, that ``scheme`` does not allow.

    ``scheme`` None (e.g. parts of speech) allows any tags. Under "BIO" (IOB2) each tag is O, B-x or
    I-x, and I-x follows B-x or I-x; "BIOES" adds E-x and S-x, and each entity ends with E-x or is one
    S-x. :func:`to_bio` and :func:`to_bioes` convert between them (and from IOB1).
    """
    if scheme is None:
        return
    for i, tags in enumerate(sentences.tags):
        parsed = [parse_tag(tag, scheme) for tag in tags]
        for tag, p in zip(tags, parsed, strict=True):
            if p is None:
                other = next((s for s in SCHEMES if s != scheme and parse_tag(tag, s)), None)
                fix = f"these tags look {other}: set the scheme to {other}" if other else "fix the tag"
                raise DataError(
                    f"{sentences.where(i)}: tag {tag!r} is not a {scheme} tag (O, or "
                    f"{'/'.join(SCHEMES[scheme])}-<type>): {fix}, or give no scheme for tags without one "
                    "(e.g. parts of speech)"
                )
        steps = zip([None, *parsed], [*parsed, None], strict=True)
        for k, (a, b) in enumerate(steps):
            if not transition_allowed(a, b, scheme):
                before, after = ([None, *tags][k] or "the start"), ([*tags, None][k] or "the end")
                fix = (
                    "BIO (IOB2) begins every entity with B-; IOB1 tags convert with rnnkit.data.conll.to_bio"
                    if scheme == "BIO"
                    else "BIOES ends every entity with E- or tags it S-; BIO tags convert with "
                    "rnnkit.data.conll.to_bioes"
                )
                raise DataError(f"{sentences.where(i)}: {after} cannot follow {before} under {scheme}: {fix}")


def to_bio(tags: Sequence[str]) -> list[str]:
    """One sentence's tags in BIO (IOB2), from BIO, BIOES or IOB1 (where I-x may begin an entity)."""
    out: list[str] = []
    for tag in tags:
        prefix, _, kind = tag.partition("-")
        if tag != "O" and not (prefix in ("B", "I", "E", "S") and kind):
            raise DataError(f"tag {tag!r} is not O or B-, I-, E-, S-<type>: only such tags convert")
        if prefix == "S" or (prefix in ("I", "E") and out[-1:] not in ([f"B-{kind}"], [f"I-{kind}"])):
            prefix = "B"
        out.append(tag if tag == "O" else f"{'I' if prefix == 'E' else prefix}-{kind}")
    return out


def to_bioes(tags: Sequence[str]) -> list[str]:
    """One sentence's tags in BIOES, from BIO, IOB1 or BIOES."""
    bio = to_bio(tags)
    out = []
    for tag, after in zip(bio, [*bio[1:], "O"], strict=True):
        prefix, _, kind = tag.partition("-")
        goes_on = after == f"I-{kind}"
        out.append(tag if tag == "O" else f"{({'B': 'BS', 'I': 'IE'}[prefix])[not goes_on]}-{kind}")
    return out


class TaggedDataset(PairDataset):
    """Word ids and tag ids per sentence, with each word's W character ids when ``chars`` is given:
    item i is (inputs (T_i,) or (T_i, 1 + W), tags (T_i,)), for :func:`rnnkit.data.pad_pairs`."""

    def __init__(self, words, tags, chars: Sequence[np.ndarray] | None = None) -> None:
        super().__init__(words, tags, same_length=True)
        self.chars = None if chars is None else np.concatenate(chars).astype(np.int64)  # (sum T_i, W)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        words, tags = super().__getitem__(index)
        if self.chars is None:
            return words, tags
        index %= len(self)
        chars = torch.from_numpy(self.chars[self.offsets[index] : self.offsets[index + 1]])  # (T_i, W)
        return torch.cat([words[:, None], chars], 1), tags  # (T_i, 1 + W)


class TagCodec:
    """Tokens -> word ids (lower-cased if ``lower``), each token's characters -> W = ``max_word_length``
    character ids (case kept; a longer word keeps its first and last W/2), tags -> ids; saved as JSON.

    Example:
        >>> codec = TagCodec.fit(read_conll("train.conll"), max_word_length=12)
        >>> codec.dataset(read_conll("test.conll"))[0][0].shape     # (T_0, 1 + 12)
    """

    def __init__(
        self, words: Vocab, tags: Sequence[str], lower: bool, chars: Vocab | None, width: int
    ) -> None:
        self.words, self.tags, self.lower, self.chars, self.width = words, list(tags), lower, chars, width
        self.tag_ids = {tag: i for i, tag in enumerate(self.tags)}

    @classmethod
    def fit(
        cls,
        train: TaggedSentences,
        tags: Sequence[str] = (),
        lower: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        max_word_length: int = 0,
    ) -> TagCodec:
        """Vocabularies of the training sentences; the tag list is theirs and ``tags``, sorted."""
        flat = [token for sentence in train.tokens for token in sentence]
        words = Vocab.build((t.lower() if lower else t for t in flat), min_freq, max_size)
        chars = Vocab.build(c for t in flat for c in t) if max_word_length else None
        all_tags = sorted({*tags, *(tag for sentence in train.tags for tag in sentence)})
        return cls(words, all_tags, lower, chars, max_word_length)

    def encode(self, tokens: Sequence[str]) -> list[int] | np.ndarray:
        """One sentence's inputs: word ids, or (T, 1 + W) word and character ids."""
        ids = self.words.encode(t.lower() if self.lower else t for t in tokens)
        if self.chars is None:
            return ids
        rows = np.zeros((len(tokens), 1 + self.width), dtype=np.int64)  # (T, 1 + W), 0 = padding
        rows[:, 0] = ids
        head = (self.width + 1) // 2
        for row, token in zip(rows, tokens, strict=True):
            kept = (
                token if len(token) <= self.width else token[:head] + token[len(token) - self.width + head :]
            )
            row[1 : 1 + len(kept)] = self.chars.encode(kept)
        return rows

    def dataset(self, sentences: TaggedSentences) -> TaggedDataset:
        """Inputs and tag ids of every sentence; a DataError names tags the codec does not know."""
        unknown = sorted({tag for tags in sentences.tags for tag in tags} - set(self.tag_ids))
        if unknown:
            raise DataError(
                f"{sentences.origin} has tags {unknown[:8]} that are not among the model's {len(self.tags)} "
                f"({', '.join(self.tags[:8])}{', ...' if len(self.tags) > 8 else ''})"
            )
        tag_ids = [[self.tag_ids[tag] for tag in tags] for tags in sentences.tags]
        encoded = [self.encode(tokens) for tokens in sentences.tokens]
        if self.chars is None:
            return TaggedDataset(encoded, tag_ids)
        return TaggedDataset([row[:, 0] for row in encoded], tag_ids, [row[:, 1:] for row in encoded])

    def state_dict(self) -> dict[str, Any]:
        return {
            "words": self.words.state_dict(),
            "tags": self.tags,
            "lower": self.lower,
            "chars": None if self.chars is None else self.chars.state_dict(),
            "max_word_length": self.width,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TagCodec:
        chars = None if state["chars"] is None else Vocab.from_state(state["chars"])
        return cls(
            Vocab.from_state(state["words"]), state["tags"], state["lower"], chars, state["max_word_length"]
        )
