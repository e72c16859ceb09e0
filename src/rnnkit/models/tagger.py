"""SequenceTagger: one tag per token (parts of speech, named entities) from a bidirectional encoder.

    model = build_model({"name": "tagger", "vocab_size": 5000, "num_tags": 45, "head": "crf"})
    emissions = model(tokens, lengths)            # tokens (B, T) -> (B, T, C) tag scores
    loss, _ = model.loss(tokens, tags, lengths)   # tags (B, T), -100 on padding
    model.predict(tokens, lengths)                # [[tag id, ...] per sequence, as long as it is]

Each token is its word vector, with character features (``char_embedding_dim > 0``) a CNN over its
characters max-pooled over the word (Ma & Hovy 2016, sec. 2.1), which reads suffixes and capitals
and so tags words the vocabulary does not hold. The inputs carry each word's characters when
``char_vocab_size > 0``: (B, T, 1 + W), the word id followed by W character ids padded with 0;
otherwise they are word ids (B, T). Batch.inputs stays one tensor, and a word the vocabulary lacks
(id 1, ``<unk>``) keeps its spelling. (With ``char_vocab_size > 0`` and no features, the characters
are read and ignored.) The encoder's outputs give every step a score per tag; the "softmax" head
picks each step's best tag, the "crf" head (:class:`rnnkit.layers.crf.CRF`) the best sequence
(Lample et al. 2016).

Shape letters as in :mod:`rnnkit`, plus C = num_tags, W characters per word, E = embedding_dim,
F = char_filters.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.crf import CRF, scheme_constraints
from rnnkit.layers.regularization import EmbeddingDropout
from rnnkit.models.encoder import EncoderConfig, check_tokens
from rnnkit.models.registry import register_model

IGNORE = -100  # the target of a padded step


class TaggerConfig(EncoderConfig):
    """What a :class:`SequenceTagger` is built from; stored with a trained model so loading rebuilds it.

    ``vocab_size``, ``num_tags``, ``tags``, ``scheme`` and ``char_vocab_size`` come from the data.
    The encoder's keys are those of :class:`rnnkit.models.encoder.EncoderConfig`, bidirectional by
    default. ``embedding_dropout`` drops whole words (every occurrence in the batch), which teaches
    the model to tag from context and characters as it must for unknown words; ``input_dropout``
    acts on each step's features entering the encoder, ``output_dropout`` on what leaves it.
    """

    name: Literal["tagger"] = "tagger"
    vocab_size: int = Field(gt=0, description="V, word ids 0 .. V-1")
    num_tags: int = Field(gt=0, description="C, tag ids 0 .. C-1")
    tags: list[str] | None = Field(None, description="the tag names in id order")
    scheme: Literal["BIO", "BIOES"] | None = Field(
        None, description="the tags' scheme: the crf head allows only the transitions it allows"
    )
    embedding_dim: int = Field(100, gt=0)
    padding_idx: int | None = Field(
        0, ge=0, description="the pad id: its vector starts at zero, gets no gradient"
    )
    char_vocab_size: int = Field(
        0,
        ge=0,
        description="0: inputs are word ids; > 0: word and character ids (used if char_embedding_dim)",
    )
    char_embedding_dim: int = Field(0, ge=0, description="0: no character features")
    char_filters: int = Field(50, gt=0, description="F, character CNN filters")
    char_width: int = Field(3, gt=0, description="characters each filter reads")
    bidirectional: bool = True
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    input_dropout: float = Field(0.0, ge=0, lt=1)
    output_dropout: float = Field(0.0, ge=0, lt=1)
    head: Literal["softmax", "crf"] = "softmax"

    @model_validator(mode="after")
    def _options_fit_together(self) -> TaggerConfig:
        if self.padding_idx is not None and self.padding_idx >= self.vocab_size:
            raise ValueError(
                f"padding_idx={self.padding_idx} must be a token id below vocab_size={self.vocab_size}"
            )
        if self.char_embedding_dim and not self.char_vocab_size:
            raise ValueError(
                f"char_embedding_dim={self.char_embedding_dim} reads each word's characters, but the inputs "
                "carry none (char_vocab_size 0): in a tagging run, set data.max_word_length (e.g. 20)"
            )
        if self.tags is not None and len(self.tags) != self.num_tags:
            raise ValueError(
                f"tags holds {len(self.tags)} names but num_tags is {self.num_tags}: give one name per tag"
            )
        if self.scheme is not None:
            if self.tags is None:
                raise ValueError(f"scheme={self.scheme!r} needs the tag names: set tags")
            scheme_constraints(self.tags, self.scheme)
        return self


class CharCNN(nn.Module):
    """Character ids (B, T, W) -> one vector (B, T, F) per word: embed, convolve, ReLU, max over the
    word's characters (Ma & Hovy 2016, sec. 2.1). Padding characters (id 0) embed as zero and are
    left out of the max, so a word's vector does not depend on W."""

    def __init__(self, vocab_size: int, embedding_dim: int, filters: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, filters, width, padding=width // 2)

    def forward(self, chars: Tensor) -> Tensor:
        B, T, W = chars.shape
        x = self.embedding(chars.reshape(B * T, W)).transpose(1, 2)  # (B*T, E_c, W)
        features = F.relu(self.conv(x))[..., :W]  # (B*T, F, W); an even width makes one extra step
        features = features.masked_fill((chars.reshape(B * T, 1, W) == 0), 0.0)  # ReLU >= 0: max unchanged
        return features.amax(2).reshape(B, T, -1)  # (B, T, F)


class TaggedSoFar(NamedTuple):
    """What :meth:`SequenceTagger.read_on` carries: the encoder's state and the emissions so far."""

    state: NamedTuple
    emissions: Tensor


@register_model("tagger", TaggerConfig)
class SequenceTagger(nn.Module):
    """Token ids -> tag scores per step: embedding (+ character CNN), recurrent encoder, linear head,
    and a CRF over the tag sequence for head="crf".

    Inputs: tokens (B, T) word ids, or (B, T, 1 + W) word and character ids when
    ``char_vocab_size > 0``; lengths (B,) real tokens per sequence or None for sequences that fill T.
    Outputs: emissions (B, T, C), each step's tag scores (the CRF adds transition scores on top).

    Example:
        >>> model = SequenceTagger(TaggerConfig(vocab_size=100, num_tags=5, head="crf"))
        >>> model(torch.randint(1, 100, (2, 7)), lengths=[7, 4]).shape   # (2, 7, 5)
        >>> model.predict(torch.randint(1, 100, (2, 7)), lengths=[7, 4])  # [[7 ids], [4 ids]]
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        c = self.config = config
        K = 2 if c.bidirectional else 1
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.padding_idx)
        self.embedding_dropout = EmbeddingDropout(c.vocab_size, c.embedding_dropout)
        self.chars = None
        if c.char_embedding_dim:
            self.chars = CharCNN(c.char_vocab_size, c.char_embedding_dim, c.char_filters, c.char_width)
        self.input_dropout = nn.Dropout(c.input_dropout)
        self.encoder = c.encoder(c.embedding_dim + (c.char_filters if self.chars is not None else 0))
        self.output_dropout = nn.Dropout(c.output_dropout)
        self.head = nn.Linear(K * c.hidden_size, c.num_tags)
        self.crf = None
        if c.head == "crf":
            self.crf = CRF(c.num_tags, None if c.scheme is None else scheme_constraints(c.tags, c.scheme))

    def initial_state(self, batch_size: int) -> None:
        """None: a tagger reads each sentence whole and carries no state from batch to batch."""
        return None

    def forward(self, tokens: Tensor, lengths=None) -> Tensor:
        words, chars = self._split(tokens)  # (B, T), (B, T, W) or None
        B, T = check_tokens(words, self.config.vocab_size)
        lengths = check_lengths(lengths, B, T)
        x = self.embedding_dropout(self.embedding(words), words)  # (B, T, E)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars)], -1)  # (B, T, E + F)
        encoded = self.encoder(self.input_dropout(x), lengths=lengths).outputs  # (B, T, K*H)
        return self.head(self.output_dropout(encoded))  # (B, T, C)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state: None = None) -> tuple[Tensor, None]:
        """Mean negative log-likelihood per real token: softmax cross-entropy over each step's tag, or
        for the CRF the negative log-probability of each whole tag sequence, summed over the batch and
        divided by its number of real tokens (so both heads' losses are on one scale).

        targets: (B, T) int64 tag ids, -100 on padding. Returns (loss, None): no state is carried.
        """
        if state is not None:
            raise ConfigError(
                "a SequenceTagger reads each sentence whole and carries no state, but a state was given: "
                "train it without train.tbptt"
            )
        emissions = self(inputs, lengths)  # (B, T, C)
        B, T, C = emissions.shape
        mask = self._mask(lengths, B, T, emissions.device)  # (B, T)
        targets = self._check_targets(targets, mask)
        if self.crf is None:
            return F.cross_entropy(
                emissions.reshape(B * T, C), targets.reshape(-1), ignore_index=IGNORE
            ), None
        return -self.crf.log_likelihood(emissions, targets, mask).sum() / mask.sum(), None

    @torch.no_grad()
    def read_on(self, tokens: Tensor, read: TaggedSoFar | None = None) -> tuple[list[int], TaggedSoFar]:
        """Read one sentence's next ``tokens`` (1, T) (or (1, T, 1 + W) with characters) after those
        in ``read`` (None: the start), the recurrence carrying its state, never reading a token twice:
        the tag ids of every token so far (each step's best, or the CRF's best path over all the
        emissions so far, which later tokens may change), as ``predict`` gives for them whole."""
        if self.config.bidirectional:
            raise ConfigError(
                "this tagger reads backwards too (bidirectional), so it cannot tag tokens as they arrive: "
                "it reads each sentence whole"
            )
        words, chars = self._split(tokens)
        check_tokens(words, self.config.vocab_size)
        was_training = self.training
        self.eval()
        try:
            x = self.embedding(words)  # (1, T, E)
            if self.chars is not None:
                x = torch.cat([x, self.chars(chars)], -1)
            encoded = self.encoder(x, None if read is None else read.state)
            emissions = self.head(encoded.outputs)  # (1, T, C)
        finally:
            self.train(was_training)
        if read is not None:
            emissions = torch.cat([read.emissions, emissions], 1)
        if self.crf is not None:
            tags = self.crf.viterbi(
                emissions, torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
            )[0]
        else:
            tags = emissions[0].argmax(-1).tolist()
        return tags, TaggedSoFar(encoded.state, emissions)

    @torch.no_grad()
    def predict(self, tokens: Tensor, lengths=None) -> list[list[int]]:
        """Tag ids of each sequence's real steps, in eval mode (mode restored): each step's best tag
        (softmax head) or the best sequence by Viterbi (crf head)."""
        was_training = self.training
        self.eval()
        try:
            emissions = self(tokens, lengths)  # (B, T, C)
        finally:
            self.train(was_training)
        B, T, _ = emissions.shape
        mask = self._mask(lengths, B, T, emissions.device)  # (B, T)
        if self.crf is not None:
            return self.crf.viterbi(emissions, mask)
        best = emissions.argmax(-1).tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, mask.sum(1).tolist(), strict=True)]

    def _split(self, tokens) -> tuple[Tensor, Tensor | None]:
        """Word ids (B, T) and character ids (B, T, W) or None, from this model's input layout."""
        if not self.config.char_vocab_size:
            return tokens, None
        if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[2] < 2:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ShapeError(
                f"this tagger reads word and character ids, (B, T, 1 + W): each token's word id, then its "
                f"W character ids; got {got}"
            )
        chars = tokens[..., 1:]  # (B, T, W)
        exporting = torch.compiler.is_exporting()  # symbolic ids under torch.export (rnnkit.export)
        if not exporting and (int(chars.min()) < 0 or int(chars.max()) >= self.config.char_vocab_size):
            raise DataError(
                f"character ids must lie in [0, {self.config.char_vocab_size}) (char_vocab_size); got min "
                f"{int(chars.min())}, max {int(chars.max())}: encode with the model's character vocabulary"
            )
        return tokens[..., 0], chars

    def _mask(self, lengths, B: int, T: int, device) -> Tensor:
        if lengths is None:
            return torch.ones(B, T, dtype=torch.bool, device=device)
        return lengths_to_mask(check_lengths(lengths, B, T), T, device)

    def _check_targets(self, targets, mask: Tensor) -> Tensor:
        if not isinstance(targets, Tensor) or targets.shape != mask.shape:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(f"targets must be (B, T) = {tuple(mask.shape)} tag ids, got {got}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ShapeError(f"targets must be int64 tag ids, got dtype {targets.dtype}")
        real = targets[mask]
        if int(real.min()) < 0 or int(real.max()) >= self.config.num_tags:
            raise DataError(
                f"every real token needs a tag id in [0, {self.config.num_tags}) (num_tags; -100 only on "
                f"padding); got min {int(real.min())}, max {int(real.max())}"
            )
        return targets.long()
