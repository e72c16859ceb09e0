"""Using a trained tagger: the tag of every token of whitespace-tokenised sentences.

    predictor = rnnkit.load("runs/pos_tagging/bundle")
    predictor.predict("The cat sat .")     # [("The", "DT"), ("cat", "NN"), ("sat", "VBD"), (".", ".")]
    predictor.predict(["The cat sat .", ["A", "dog", "ran"]])   # one list of (token, tag) pairs each

A sentence is a string, split at whitespace, or a list of tokens (split the way the training data
was: Penn Treebank tokens keep "n't" and punctuation apart, e.g. "does n't" and "cat .").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.conll import TagCodec, TaggedSentences
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.tagging import predict_ids

Sentence = str | Sequence[str]


def _tokens(sentences: Sequence[Sentence]) -> list[list[str]]:
    """Each sentence as its tokens; a DataError names an empty sentence or a token with whitespace."""
    if not sentences:
        raise DataError("no sentences to tag: give a sentence, a list of them, or a text file of them")
    out = []
    for i, sentence in enumerate(sentences, 1):
        tokens = sentence.split() if isinstance(sentence, str) else list(sentence)
        if not tokens:
            raise DataError(f"sentence {i} is empty (counted from 1): give each at least one token")
        bad = [t for t in tokens if not isinstance(t, str) or not t or t != "".join(t.split())]
        if bad:
            raise DataError(
                f"sentence {i} (counted from 1) has tokens {bad[:3]} that are not non-empty strings without "
                "whitespace: give a sentence as a string (split at whitespace) or a list of such tokens"
            )
        out.append(tokens)
    return out


@torch.no_grad()
def tag_sentences(model, sentences: Sequence[Sentence], preprocessing) -> list[list[tuple[str, str]]]:
    """(token, tag) pairs of every sentence."""
    codec = TagCodec.from_state(preprocessing["codec"])
    tokens = _tokens(sentences)
    placeholder = [[codec.tags[0]] * len(t) for t in tokens]  # the dataset wants tags; none are read
    model.eval()
    ids = predict_ids(model, codec.dataset(TaggedSentences(tokens, placeholder, "the input")))
    return [
        [(token, codec.tags[i]) for token, i in zip(sentence, row, strict=True)]
        for sentence, row in zip(tokens, ids, strict=True)
    ]


class TaggingPredictor(Predictor):
    """A trained tagger: ``predict`` tags sentences."""

    verbs = (*Predictor.verbs, "predict", "session")

    def session(self, condition: Any = None) -> TaggingSession:
        """A sentence tagged as its tokens arrive, the state carried (forward-only taggers)."""
        if condition is not None:
            raise ConfigError("a tagger takes no condition")
        if self.model.config.bidirectional:
            self.model.read_on(torch.zeros(1, 1, dtype=torch.long))  # raises the ConfigError that says why
        return TaggingSession(self)

    def predict(
        self, inputs: str | Sequence[Sentence] | Path, **options
    ) -> list[tuple[str, str]] | list[list[tuple[str, str]]]:
        """The (token, tag) pairs of one sentence (a string), or of each sentence in a list (strings or
        token lists) or in a text file (one sentence a line, blank lines skipped)."""
        if options:
            raise ConfigError(
                f"a tagger's predict takes no options (seq2seq models do); got {sorted(options)}"
            )
        if isinstance(inputs, str):
            return tag_sentences(self.model, [inputs], self.preprocessing)[0]
        sentences = self.read(inputs) if isinstance(inputs, Path) else list(inputs)
        return tag_sentences(self.model, sentences, self.preprocessing)

    def format(self, result: list[tuple[str, str]]) -> str:
        """One sentence as ``token/TAG`` words: "The/DT cat/NN sat/VBD ./."."""
        return " ".join(f"{token}/{tag}" for token, tag in result)

    def read(self, path: Path) -> list[str]:
        """The non-blank lines of a text file, one sentence each."""
        if not path.is_file():
            raise DataError(f"{path} is not a file")
        encoding = self.data_config.encoding
        try:
            content = path.read_text(encoding=encoding)
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path} is not {encoding.upper()} (byte {error.start}); convert it, e.g. iconv -t {encoding}"
            ) from None
        sentences = [line for line in content.splitlines() if line.strip()]
        if not sentences:
            raise DataError(f"{path} holds no sentence")
        return sentences


class TaggingSession:
    """One sentence's tokens fed as they arrive (a string of space-separated tokens each time), each
    read once with the state carried; after each feed, the (token, tag) pairs of the sentence so far,
    as ``predict`` tags them whole (a CRF's best path may change earlier tags as tokens arrive)."""

    def __init__(self, predictor: TaggingPredictor) -> None:
        self.model = predictor.model
        self.codec = TagCodec.from_state(predictor.preprocessing["codec"])
        self.read: Any = None
        self.tokens: list[str] = []

    def feed(self, text: str, top: int | None = None) -> dict[str, Any]:
        """Tag ``text``'s tokens after those fed before (``top`` is ignored)."""
        (tokens,) = _tokens([text])
        ids = torch.as_tensor(np.asarray(self.codec.encode(tokens)))[None]  # (1, T) or (1, T, 1 + W)
        tags, self.read = self.model.read_on(ids.to(next(self.model.parameters()).device), self.read)
        self.tokens += tokens
        return {
            "tokens_read": len(self.tokens),
            "tagged": [(token, self.codec.tags[i]) for token, i in zip(self.tokens, tags, strict=True)],
        }
