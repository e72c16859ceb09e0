"""SequenceClassifier: embedding, recurrent encoder, pooling over time, and a class head.

    model = build_model({"name": "classifier", "vocab_size": 5000, "num_classes": 2, "head": "binary"})
    logits, attention = model(tokens, lengths)        # tokens (B, T) -> logits (B,)
    loss, _ = model.loss(tokens, labels, lengths)     # labels (B,) 0/1
    model.predict(tokens, lengths)                    # (B,) P(class 1)

Heads: "binary" (one logit, P(class 1) by a sigmoid, binary cross-entropy; num_classes = 2),
"multiclass" (C logits, softmax cross-entropy) and "multilabel" (C independent sigmoid logits,
binary cross-entropy against a multi-hot (B, C) target). Pooling reads real steps only, so with
``lengths`` a text's prediction does not depend on what else is in its batch.

ULMFiT (Howard & Ruder 2018): ``pooling="concat"`` gives the head [last, max, mean] (3F wide), and
:meth:`SequenceClassifier.layer_groups` offers the layer groups that ``train.optimizer.discriminative``
and ``train.gradual_unfreezing`` work on.

Over numbers instead of ids (recordings of sensor channels): ``input_size`` replaces ``vocab_size``
and inputs are (B, T, input_size) floats. Two options for such recordings: ``conv_channels`` puts
Conv1d blocks before the recurrence (the recurrent-convolutional design), and ``chunk_size`` makes
the encoder hierarchical: a recurrence over each chunk of that many steps, then one over the
chunks' final states, for recordings too long for one recurrence to carry. Both keep a recording's
prediction independent of its batch's padding (tested).

    model = build_model({"name": "classifier", "input_size": 6, "num_classes": 4,
                         "conv_channels": [32, 32], "chunk_size": 20})

Shape letters as in :mod:`rnnkit`, plus E = embedding_dim, C = num_classes and F = K*H (pooled size;
the head reads 3F under concat pooling).
"""

from __future__ import annotations

import itertools
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.regularization import EmbeddingDropout
from rnnkit.models.encoder import (
    EncoderConfig,
    Pooling,
    check_tokens,
    encoder_layers,
    final_states,
    group_parameters,
)
from rnnkit.models.registry import register_model


class ClassifierConfig(EncoderConfig):
    """What a :class:`SequenceClassifier` is built from; stored with a trained model so loading rebuilds it.

    ``vocab_size`` and ``num_classes`` come from the data. The encoder's keys (cell, hidden_size,
    num_layers, bidirectional, dropout, ...) are those of :class:`rnnkit.models.encoder.EncoderConfig`.
    ``embedding_dropout`` drops whole words (every occurrence of a word in the batch, Gal &
    Ghahramani 2016, sec. 4.2); ``output_dropout`` acts on the pooled vector before the head.
    """

    name: Literal["classifier"] = "classifier"
    vocab_size: int | None = Field(None, gt=0, description="V, token ids 0 .. V-1 (text)")
    input_size: int | None = Field(
        None, gt=0, description="numbers instead of ids: features a step (a recording's channels)"
    )
    num_classes: int = Field(gt=0, description="C; 2 for head='binary'")
    conv_channels: list[int] = Field(
        default_factory=list, description="Conv1d blocks (ReLU) before the recurrence: their channels"
    )
    conv_kernel: int = Field(5, ge=1, description="the conv blocks' kernel width, odd (lengths kept)")
    chunk_size: int | None = Field(
        None,
        ge=2,
        description="hierarchical: a recurrence over chunks of this many steps, then one over chunks",
    )
    embedding_dim: int = Field(128, gt=0)
    padding_idx: int | None = Field(
        0, ge=0, description="the pad id: its vector starts at zero, gets no gradient"
    )
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    output_dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max", "attention", "concat"] = Field(
        "last",
        description="over time: last state, mean, max, attention, or concat = [last, max, mean] "
        "(ULMFiT; the head reads 3 x K*H)",
    )
    head: Literal["binary", "multiclass", "multilabel"] = "multiclass"

    @model_validator(mode="after")
    def _options_fit_together(self) -> ClassifierConfig:
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError(
                "give vocab_size (token ids) or input_size (numeric features a step), one of them"
            )
        if self.conv_kernel % 2 == 0:
            raise ValueError(
                f"conv_kernel must be odd so that a sequence keeps its length, got {self.conv_kernel}"
            )
        if (
            self.vocab_size is not None
            and self.padding_idx is not None
            and self.padding_idx >= self.vocab_size
        ):
            raise ValueError(
                f"padding_idx={self.padding_idx} must be a token id below vocab_size={self.vocab_size}"
            )
        if self.head == "binary" and self.num_classes != 2:
            raise ValueError(
                f"head='binary' gives one probability, of class 1, so num_classes must be 2, got "
                f"{self.num_classes}: use head='multiclass' or 'multilabel'"
            )
        if self.head == "multiclass" and self.num_classes < 2:
            raise ValueError(f"head='multiclass' needs num_classes >= 2, got {self.num_classes}")
        return self


class ReadSoFar(NamedTuple):
    """What :meth:`SequenceClassifier.read_on` carries: the encoder's state (fields (L, B, H)) and
    its outputs so far (B, T, H), which pooling reads again after each step."""

    state: NamedTuple
    outputs: Tensor


class ClassifierOutput(NamedTuple):
    """logits (B,) for the binary head, (B, C) otherwise; attention (B, T) weights or None.

    The attention weights (pooling="attention" only) are zero on padded steps and sum to 1 per row:
    how much each token's encoder output counts in the pooled vector.
    """

    logits: Tensor
    attention: Tensor | None


@register_model("classifier", ClassifierConfig)
class SequenceClassifier(nn.Module):
    """Token ids -> class logits: embedding, recurrent encoder, pooling, dropout, linear head.

    Inputs: tokens (B, T) int64 ids; lengths (B,) real tokens per text (1 <= length <= T) or None
    for texts that fill T. Outputs: :class:`ClassifierOutput`.

    Example:
        >>> model = SequenceClassifier(ClassifierConfig(vocab_size=100, num_classes=3, pooling="attention"))
        >>> out = model(torch.randint(1, 100, (4, 12)), lengths=[12, 9, 5, 1])
        >>> out.logits.shape, out.attention.shape       # (4, 3), (4, 12)
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        c = self.config = config
        K = 2 if c.bidirectional else 1
        self.embedding = None
        if c.vocab_size is not None:
            self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.padding_idx)
            self.embedding_dropout = EmbeddingDropout(c.vocab_size, c.embedding_dropout)
        width = c.embedding_dim if c.vocab_size is not None else c.input_size
        self.conv = ConvFrontEnd(width, c.conv_channels, c.conv_kernel) if c.conv_channels else None
        width = c.conv_channels[-1] if c.conv_channels else width
        self.encoder = c.encoder(width)
        self.upper = c.encoder(K * c.hidden_size) if c.chunk_size else None  # over the chunks' summaries
        self.pooling = Pooling(c.pooling, K * c.hidden_size, K)
        self.output_dropout = nn.Dropout(c.output_dropout)
        self.head = nn.Linear(self.pooling.size, 1 if c.head == "binary" else c.num_classes)

    def initial_state(self, batch_size: int) -> None:
        """None: a classifier reads each text whole and carries no state from batch to batch."""
        return None

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters bottom to top, for ULMFiT's discriminative rates and gradual unfreezing
        (:mod:`rnnkit.train.finetune`): the front end (embedding, conv blocks), each encoder layer
        (both directions of a bidirectional one), each layer over the chunks (``chunk_size``), then
        pooling and head. Each parameter once; a numeric model without conv blocks has no front end."""
        upper = [] if self.upper is None else encoder_layers(self.upper)
        layers = [[layer] for layer in [*encoder_layers(self.encoder), *upper]]
        return group_parameters([[self.embedding, self.conv], *layers, [self.pooling, self.head]])

    def forward(self, tokens: Tensor, lengths=None) -> ClassifierOutput:
        """tokens (B, T) ids, or (B, T, input_size) numbers for a numeric classifier."""
        if self.embedding is not None:
            B, T = check_tokens(tokens, self.config.vocab_size)
            x = self.embedding_dropout(self.embedding(tokens), tokens)  # (B, T, E)
        else:
            B, T = check_features(tokens, self.config.input_size)
            x = tokens
        lengths = check_lengths(lengths, B, T)
        mask = None if lengths is None else lengths_to_mask(lengths, T, tokens.device)  # (B, T)
        if self.conv is not None:
            x = self.conv(x, mask)
        if self.upper is None:
            encoded = self.encoder(x, lengths=lengths)  # outputs (B, T, K*H)
        else:
            encoded, mask = self._hierarchy(x, lengths)  # outputs (B, N, K*H) over N chunks
        pooled, attention = self.pooling(encoded, mask)  # (B, F) (3F for concat), (B, T) or None
        logits = self.head(self.output_dropout(pooled))  # (B, 1) or (B, C)
        return ClassifierOutput(logits.squeeze(-1) if self.config.head == "binary" else logits, attention)

    @torch.no_grad()
    def read_on(self, tokens: Tensor, read: ReadSoFar | None = None) -> tuple[ClassifierOutput, ReadSoFar]:
        """Read ``tokens`` (B, T) ids, or (B, T, input_size) numbers, after everything in ``read``
        (None: the start), the recurrence carrying its state, never reading the past again: the
        output for everything read so far (as ``forward`` on the whole, in eval mode) and what to
        carry on with. A model that reads backwards, convolves over neighbours or reads in chunks
        cannot read on this way (ConfigError)."""
        c = self.config
        if c.bidirectional or self.conv is not None or self.upper is not None:
            why = (
                "reads backwards"
                if c.bidirectional
                else "convolves over neighbours"
                if self.conv
                else "reads chunks"
            )
            raise ConfigError(
                f"this classifier {why}, so it cannot read on step by step: it reads each input whole"
            )
        was_training = self.training
        self.eval()
        try:
            if self.embedding is not None:
                check_tokens(tokens, c.vocab_size)
                x = self.embedding(tokens)  # (B, T, E)
            else:
                check_features(tokens, c.input_size)
                x = tokens
            encoded = self.encoder(x, None if read is None else read.state)
            outputs = encoded.outputs if read is None else torch.cat([read.outputs, encoded.outputs], 1)
            pooled, attention = self.pooling(
                encoded._replace(outputs=outputs), None
            )  # over every step so far
            logits = self.head(pooled)
        finally:
            self.train(was_training)
        output = ClassifierOutput(logits.squeeze(-1) if c.head == "binary" else logits, attention)
        return output, ReadSoFar(encoded.state, outputs)

    def _hierarchy(self, x: Tensor, lengths: Tensor | None):
        """The lower recurrence over each chunk of ``chunk_size`` steps (the last one zero-padded and
        read to its real length), the upper one over the chunks' final states: (outputs, chunk mask)."""
        B, T, D = x.shape
        S = self.config.chunk_size
        N = -(-T // S)
        full = torch.full((B,), T, device=x.device) if lengths is None else lengths.to(x.device)
        starts = torch.arange(N, device=x.device) * S  # (N,)
        chunk_lengths = (full[:, None] - starts).clamp(0, S)  # (B, N); 0 for chunks past the end
        chunks = F.pad(x, (0, 0, 0, N * S - T)).reshape(B * N, S, D)
        lower = self.encoder(chunks, lengths=chunk_lengths.clamp(min=1).flatten())
        K = 2 if self.config.bidirectional else 1
        summaries = final_states(lower.state, K).reshape(B, N, -1)  # (B, N, K*H)
        counts = -(-full // S)  # (B,) real chunks
        return self.upper(summaries, lengths=counts), lengths_to_mask(counts, N, x.device)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state: None = None) -> tuple[Tensor, None]:
        """Binary cross-entropy (binary, multilabel) or softmax cross-entropy (multiclass), batch mean.

        targets: (B,) 0/1 (int or float) for binary, (B,) int64 class ids for multiclass, (B, C)
        multi-hot for multilabel. Returns (loss, None): no state is carried.
        """
        if state is not None:
            raise ConfigError(
                "a SequenceClassifier reads each text whole and carries no state, but a state was given: "
                "train it without train.tbptt and on padded batches rather than a stream"
            )
        logits = self(inputs, lengths).logits
        targets = self._check_targets(targets, inputs.shape[0])
        if self.config.head == "multiclass":
            return F.cross_entropy(logits, targets), None
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype)), None

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """Probabilities in eval mode, without gradients (mode restored): (B,) P(class 1) for binary,
        (B, C) a softmax over classes for multiclass, (B, C) independent P(label) for multilabel."""
        was_training = self.training
        self.eval()
        try:
            logits = self(inputs, lengths).logits
        finally:
            self.train(was_training)
        return torch.softmax(logits, -1) if self.config.head == "multiclass" else torch.sigmoid(logits)

    @torch.no_grad()
    def load_embeddings(self, weight: Tensor, freeze: bool = False) -> None:
        """Start the embedding from pretrained vectors (V, E), e.g. GloVe rows in vocabulary order.

        ``freeze=True`` keeps them fixed in training (requires_grad False). The padding row is used
        as given; padded steps never reach the encoder's result, so its value does not matter.
        """
        if self.embedding is None:
            raise ConfigError("a numeric classifier (input_size) has no embedding to load vectors into")
        expected = (self.config.vocab_size, self.config.embedding_dim)
        if not isinstance(weight, Tensor) or tuple(weight.shape) != expected:
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ShapeError(
                f"pretrained embeddings must be (vocab_size, embedding_dim) = {expected}, got {got}: build "
                "the matrix in the model's vocabulary order, with embedding_dim set to the vectors' size"
            )
        self.embedding.weight.copy_(weight)
        self.embedding.weight.requires_grad_(not freeze)

    def _check_targets(self, targets, batch_size: int) -> Tensor:
        head, C = self.config.head, self.config.num_classes
        expected = (batch_size, C) if head == "multilabel" else (batch_size,)
        if not isinstance(targets, Tensor) or tuple(targets.shape) != expected:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(f"targets for head={head!r} must be {expected}, got {got}")
        integer = not (targets.is_floating_point() or targets.is_complex())
        if head == "multiclass":
            if not integer or targets.dtype == torch.bool:
                raise ShapeError(f"multiclass targets must be int64 class ids, got dtype {targets.dtype}")
            if int(targets.min()) < 0 or int(targets.max()) >= C:
                raise DataError(
                    f"class ids must lie in [0, {C}) (num_classes); got min {int(targets.min())}, "
                    f"max {int(targets.max())}"
                )
            return targets.long()
        if bool(((targets < 0) | (targets > 1)).any()):
            what = "0/1 labels" if head == "binary" else "multi-hot rows of 0/1"
            raise DataError(f"targets for head={head!r} must be {what} (probabilities in [0, 1])")
        return targets


class ConvFrontEnd(nn.Module):
    """Conv1d blocks (same length, ReLU) before the recurrence: the recurrent-convolutional design.

    Padded steps are zeroed before each block, so a sequence's outputs are what the blocks give it
    alone (whose edges are zero-padded the same way): padding in a batch changes nothing.
    """

    def __init__(self, in_channels: int, channels: list[int], kernel: int) -> None:
        super().__init__()
        sizes = [in_channels, *channels]
        self.blocks = nn.ModuleList(
            nn.Conv1d(a, b, kernel, padding=kernel // 2) for a, b in itertools.pairwise(sizes)
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, D), mask (B, T) or None -> (B, T, channels[-1])."""
        keep = None if mask is None else mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        y = x.transpose(1, 2)  # (B, D, T)
        for block in self.blocks:
            y = torch.relu(block(y if keep is None else y * keep))
        return y.transpose(1, 2) if keep is None else (y * keep).transpose(1, 2)


def check_features(inputs, size: int) -> tuple[int, int]:
    """Numeric inputs must be a finite (B, T, size) float tensor; returns (B, T)."""
    if not isinstance(inputs, Tensor) or inputs.dim() != 3 or inputs.shape[-1] != size:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ShapeError(f"inputs must be (B, T, input_size={size}) numbers, got {got}")
    if not inputs.is_floating_point():
        raise ShapeError(f"inputs must be floating point, got dtype {inputs.dtype}")
    if 0 in inputs.shape[:2]:
        raise ShapeError(f"inputs are empty: shape {tuple(inputs.shape)}; every batch needs B >= 1, T >= 1")
    if not torch.compiler.is_exporting() and not torch.isfinite(inputs).all():  # symbolic under export
        raise DataError("inputs hold NaN or infinity: fill or drop those steps first")
    return inputs.shape[0], inputs.shape[1]
