"""Tokenisers, a vocabulary and the codec (tokeniser + vocabulary) that turns text into token ids and back.

    codec = TextCodec.fit(train_texts, level="word", min_freq=2, max_size=20_000)
    ids = codec.encode("The cat sat on the mat.", eos=True)     # [5, 812, 1034, 30, 5, 2210, 4, 3]
    codec.decode(ids)                                            # "the cat sat on the mat."
    again = TextCodec.from_state(json.loads(json.dumps(codec.state_dict())))   # the same encodings

Three levels: ``"char"`` (every character a token), ``"word"`` (:data:`WORD_PATTERN`) and ``"bpe"``
(byte-level subwords learned with the ``tokenizers`` library, imported only for this level). Ids 0-3
are always ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``; the rest follow frequency.

``TextCodec.fit`` reads its texts once, as an iterator, so a corpus larger than memory can be fitted
chunk by chunk: ``TextCodec.fit(corpus_chunks(path), level="char")`` (see :mod:`rnnkit.data.corpus`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, ClassVar

from rnnkit.errors import ConfigError, DataError, unknown_name

STATE_FORMAT = 1
LEVELS = ("char", "word", "bpe")

WORD_PATTERN = r"\d+(?:[.,]\d+)+|\w+(?:['\u2019-]\w+)*|[^\w\s]"
"""The word tokeniser's regex, tried left to right at each position:

1. numbers with decimal points or thousands separators: ``3.14``, ``1,000,000``;
2. runs of letters, digits and underscores joined by inner apostrophes (' or U+2019) or hyphens:
   ``don't``, ``well-known``, ``o'clock``, ``mp3``, ``1990s``;
3. any other character except whitespace, alone: each punctuation mark (``.``, ``!``, ``"``) and
   symbol or emoji is its own token.

Whitespace separates tokens and is dropped, so every non-space character lands in some token.
"""

_NO_SPACE_BEFORE = set(".,!?;:%)]}…")
_NO_SPACE_AFTER = set("([{$")


class CharTokenizer:
    """Every character is a token; ``detokenize(tokenize(text)) == text`` (lower-cased if ``lower``)."""

    kind: ClassVar[str] = "char"

    def __init__(self, lower: bool = False) -> None:
        self.lower = lower

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lower else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower}


class WordTokenizer:
    """Tokens by a regex (default :data:`WORD_PATTERN`), lower-cased by default.

    ``detokenize`` cannot restore the whitespace tokenising dropped: it joins tokens with single
    spaces, except before closing punctuation (``.,!?;:%)]}``) and after opening brackets.
    """

    kind: ClassVar[str] = "word"

    def __init__(self, lower: bool = True, pattern: str = WORD_PATTERN) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"word pattern {pattern!r} is not a valid regex: {error}") from None
        self.lower, self.pattern = lower, pattern

    def tokenize(self, text: str) -> list[str]:
        return self.regex.findall(text.lower() if self.lower else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        parts: list[str] = []
        for token in tokens:
            if parts and token not in _NO_SPACE_BEFORE and parts[-1] not in _NO_SPACE_AFTER:
                parts.append(" ")
            parts.append(token)
        return "".join(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower, "pattern": self.pattern}


class BPETokenizer:
    """Byte-level BPE subwords (GPT-2 style) learned with the ``tokenizers`` library.

    Text is cut at spaces and punctuation (a space joins the word after it), each piece is spelled in
    its UTF-8 bytes and the learned merges are applied, so no text is ever unknown and
    ``detokenize(tokenize(text)) == text`` exactly (lower-cased if ``lower``). Tokens are strings in
    the byte alphabet, e.g. ``"Ġcat"`` for `` cat``.
    """

    kind: ClassVar[str] = "bpe"

    def __init__(self, tokenizer: Any, lower: bool = False) -> None:
        self.tokenizer, self.lower = tokenizer, lower

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, lower: bool = False, min_freq: int = 1
    ) -> BPETokenizer:
        """Learn merges from ``texts`` (read once) until ``vocab_size`` tokens (the 256 bytes included)."""
        tokenizers = _tokenizers()
        if vocab_size < 257:
            raise ConfigError(f"bpe_vocab_size must exceed the 256 byte tokens, got {vocab_size}")
        tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
        if lower:
            tokenizer.normalizer = tokenizers.normalizers.Lowercase()
        tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer, lower)

    def tokens(self) -> list[str]:
        """Every token the tokeniser can produce, in its own id order (the byte alphabet first)."""
        vocab = self.tokenizer.get_vocab()
        return sorted(vocab, key=vocab.__getitem__)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.tokenizer.decoder.decode(list(tokens))

    def state_dict(self) -> dict[str, Any]:
        """The learned merges and vocabulary as the library's own JSON string (``Tokenizer.to_str``)."""
        return {"kind": self.kind, "lower": self.lower, "tokenizer": self.tokenizer.to_str()}


Tokenizer = CharTokenizer | WordTokenizer | BPETokenizer


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokeniser from its ``state_dict()``."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(lower=state["lower"])
    if kind == "word":
        return WordTokenizer(lower=state["lower"], pattern=state["pattern"])
    if kind == "bpe":
        return BPETokenizer(_tokenizers().Tokenizer.from_str(state["tokenizer"]), lower=state["lower"])
    raise unknown_name("tokenizer kind", str(kind), LEVELS)


class Vocab:
    """Tokens <-> ids. Ids 0-3 are the specials ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``, in that order.

    Example:
        >>> vocab = Vocab.build("a b a c a b".split(), min_freq=2)
        >>> vocab.tokens, vocab.encode(["a", "c"]), vocab.decode([4, 5])
        (['<pad>', '<unk>', '<bos>', '<eos>', 'a', 'b'], [4, 1], ['a', 'b'])
    """

    SPECIALS: ClassVar[tuple[str, ...]] = ("<pad>", "<unk>", "<bos>", "<eos>")
    pad_id: ClassVar[int] = 0
    unk_id: ClassVar[int] = 1
    bos_id: ClassVar[int] = 2
    eos_id: ClassVar[int] = 3

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        """The specials, then ``tokens`` as ids 4, 5, ...; a repeated token keeps its first id."""
        self.tokens: list[str] = list(self.SPECIALS)  # id -> token
        self.ids: dict[str, int] = {token: i for i, token in enumerate(self.tokens)}
        for token in tokens:
            if token not in self.ids:
                self.ids[token] = len(self.tokens)
                self.tokens.append(token)

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """The tokens seen at least ``min_freq`` times, most frequent first, ties by first appearance.

        ``max_size`` caps ``len(vocab)``, the four specials included (so at most max_size - 4 tokens
        from the data); the rarest tokens are the ones left out. ``tokens`` is read once.
        """
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size <= len(cls.SPECIALS):
            raise ConfigError(
                f"max_size counts the {len(cls.SPECIALS)} special tokens {list(cls.SPECIALS)}, so it "
                f"must be > {len(cls.SPECIALS)}; got {max_size}"
            )
        counts = Counter(tokens)  # insertion order = first appearance; sorted() below is stable
        kept = [t for t, n in sorted(counts.items(), key=lambda item: -item[1]) if n >= min_freq]
        kept = [t for t in kept if t not in cls.SPECIALS]
        if max_size is not None:
            kept = kept[: max_size - len(cls.SPECIALS)]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.ids

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.tokens[4:9]}...)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token ids; a token not in the vocabulary becomes ``unk_id``."""
        get, unk = self.ids.get, self.unk_id
        return [get(token, unk) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids``; an id outside 0..len-1 is a DataError."""
        ids, n = [int(i) for i in ids], len(self.tokens)
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise DataError(f"ids {bad[:5]} are not in this vocabulary of {n} tokens (ids 0 to {n - 1})")
        return [self.tokens[i] for i in ids]

    def state_dict(self) -> dict[str, Any]:
        """{"tokens": every token in id order, specials included}: JSON-able."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vocab:
        tokens = list(state["tokens"])
        if tuple(tokens[: len(cls.SPECIALS)]) != cls.SPECIALS:
            raise DataError(
                f"a vocabulary state must start with the specials {list(cls.SPECIALS)}; "
                f"got {tokens[: len(cls.SPECIALS)]}"
            )
        vocab = cls(tokens[len(cls.SPECIALS) :])
        if len(vocab) != len(tokens):
            raise DataError(
                f"the vocabulary state repeats tokens: {len(tokens)} given, {len(vocab)} distinct"
            )
        return vocab


class TextCodec:
    """Tokeniser + vocabulary: the one object a text task uses, and what its bundle saves (as JSON).

    Example:
        >>> codec = TextCodec.fit(["the cat sat", "the dog"], level="word")
        >>> codec.encode("the cat ran", bos=True)
        [2, 4, 5, 1]
        >>> codec.decode([2, 4, 5, 1, 0, 0])   # pad, bos and eos dropped; unknown words stay <unk>
        'the cat <unk>'
    """

    def __init__(self, tokenizer: Tokenizer, vocab: Vocab) -> None:
        self.tokenizer, self.vocab = tokenizer, vocab

    @property
    def level(self) -> str:
        return self.tokenizer.kind

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        level: str = "word",
        lower: bool | None = None,
        min_freq: int = 1,
        max_size: int | None = None,
        bpe_vocab_size: int = 8000,
        pattern: str = WORD_PATTERN,
    ) -> TextCodec:
        """Learn the tokeniser (bpe) and vocabulary from ``texts``, read once (an iterator of chunks is fine).

        Args:
            level: "char", "word" or "bpe".
            lower: lower-case before tokenising; None takes the level's default (word True, else False).
            min_freq: char/word: keep tokens seen this often; bpe: merge pairs seen this often.
            max_size: char/word: cap on ``len(vocab)``, the 4 specials included. Not for bpe, whose
                vocabulary is the 4 specials plus its ``bpe_vocab_size`` tokens (all bytes included,
                so nothing is ever unknown).
            pattern: the word level's regex.
        """
        if level not in LEVELS:
            raise unknown_name("text level", level, LEVELS)
        lower = (level == "word") if lower is None else lower
        if level == "bpe":
            if max_size is not None:
                raise ConfigError(
                    "max_size is for char and word levels; size a bpe vocabulary by bpe_vocab_size"
                )
            seen = _Counted(texts)
            tokenizer = BPETokenizer.train(seen, bpe_vocab_size, lower=lower, min_freq=min_freq)
            if not seen.nonblank:
                raise DataError("no text to learn a vocabulary from: every text given is empty")
            return cls(tokenizer, Vocab(tokenizer.tokens()))
        tokenizer = CharTokenizer(lower) if level == "char" else WordTokenizer(lower, pattern)
        vocab = Vocab.build(chain.from_iterable(map(tokenizer.tokenize, texts)), min_freq, max_size)
        if len(vocab) == len(Vocab.SPECIALS):
            raise DataError(
                f"no token occurs {min_freq} or more times in the texts given (none at all if they are "
                "empty): give more text or lower min_freq"
            )
        return cls(tokenizer, vocab)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of ``text``, optionally framed by ``<bos>``/``<eos>``; empty text gives no ids."""
        ids = self.vocab.encode(self.tokenizer.tokenize(text))
        return [self.vocab.bos_id] * bos + ids + [self.vocab.eos_id] * eos

    def unknown(self, text: str) -> list[str]:
        """The tokens of ``text`` that the vocabulary does not hold (each becomes ``<unk>``)."""
        return [token for token in self.tokenizer.tokenize(text) if token not in self.vocab]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; pad, bos and eos are dropped, unknown tokens read ``<unk>``."""
        skip = {self.vocab.pad_id, self.vocab.bos_id, self.vocab.eos_id}
        return self.tokenizer.detokenize(self.vocab.decode(int(i) for i in ids if int(i) not in skip))

    def state_dict(self) -> dict[str, Any]:
        """{"format", "tokenizer", "vocab"}: plain JSON, restored exactly by :meth:`from_state`."""
        return {
            "format": STATE_FORMAT,
            "tokenizer": self.tokenizer.state_dict(),
            "vocab": self.vocab.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextCodec:
        if state.get("format") != STATE_FORMAT:
            raise DataError(
                f"text codec state format {state.get('format')!r} is not the one this rnnkit reads "
                f"({STATE_FORMAT}): save the bundle again with this version"
            )
        return cls(tokenizer_from_state(state["tokenizer"]), Vocab.from_state(state["vocab"]))

    def __repr__(self) -> str:
        return f"TextCodec(level={self.level!r}, lower={self.tokenizer.lower}, vocab={len(self.vocab)})"


class _Counted:
    """Passes texts through once, noting whether any had a non-space character."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts, self.nonblank = texts, False

    def __iter__(self):
        for text in self.texts:
            self.nonblank = self.nonblank or bool(text.strip())
            yield text


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(
            "subword (bpe) tokenisation needs the 'tokenizers' package: pip install tokenizers"
        ) from None
    return tokenizers
