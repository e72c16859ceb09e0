"""SequenceClassifier: embedding, recurrent encoder, pooling over time, and a class head.

    model = build_model({"name": "classifier", "vocab_size": 5000, "num_classes": 2, "head": "binary"})
    logits, attention = model(tokens, lengths)        # tokens (B, T) -> logits (B,)
    loss, _ = model.loss(tokens, labels, lengths)     # labels (B,) 0/1
    model.predict(tokens, lengths)                    # (B,) P(class 1)

Heads: "binary" (one logit, P(class 1) by a sigmoid, binary cross-entropy; num_classes = 2),
"multiclass" (C logits, softmax cross-entropy) and "multilabel" (C independent sigmoid logits,
binary cross-entropy against a multi-hot (B, C) target). Pooling reads real steps only, so with
``lengths`` a text's prediction does not depend on what else is in its batch.

Shape letters as in :mod:`rnnkit`, plus E = embedding_dim, C = num_classes and F = K*H (pooled size).
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
from rnnkit.layers.regularization import EmbeddingDropout
from rnnkit.models.encoder import EncoderConfig, Pooling, check_tokens
from rnnkit.models.registry import register_model


class ClassifierConfig(EncoderConfig):
    """What a :class:`SequenceClassifier` is built from; stored with a trained model so loading rebuilds it.

    ``vocab_size`` and ``num_classes`` come from the data. The encoder's keys (cell, hidden_size,
    num_layers, bidirectional, dropout, ...) are those of :class:`rnnkit.models.encoder.EncoderConfig`.
    ``embedding_dropout`` drops whole words (every occurrence of a word in the batch, Gal &
    Ghahramani 2016, sec. 4.2); ``output_dropout`` acts on the pooled vector before the head.
    """

    name: Literal["classifier"] = "classifier"
    vocab_size: int = Field(gt=0, description="V, token ids 0 .. V-1")
    num_classes: int = Field(gt=0, description="C; 2 for head='binary'")
    embedding_dim: int = Field(128, gt=0)
    padding_idx: int | None = Field(
        0, ge=0, description="the pad id: its vector starts at zero, gets no gradient"
    )
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    output_dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max", "attention"] = "last"
    head: Literal["binary", "multiclass", "multilabel"] = "multiclass"

    @model_validator(mode="after")
    def _options_fit_together(self) -> ClassifierConfig:
        if self.padding_idx is not None and self.padding_idx >= self.vocab_size:
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
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.padding_idx)
        self.embedding_dropout = EmbeddingDropout(c.vocab_size, c.embedding_dropout)
        self.encoder = c.encoder(c.embedding_dim)
        self.pooling = Pooling(c.pooling, K * c.hidden_size, K)
        self.output_dropout = nn.Dropout(c.output_dropout)
        self.head = nn.Linear(K * c.hidden_size, 1 if c.head == "binary" else c.num_classes)

    def initial_state(self, batch_size: int) -> None:
        """None: a classifier reads each text whole and carries no state from batch to batch."""
        return None

    def forward(self, tokens: Tensor, lengths=None) -> ClassifierOutput:
        B, T = check_tokens(tokens, self.config.vocab_size)
        lengths = check_lengths(lengths, B, T)
        x = self.embedding_dropout(self.embedding(tokens), tokens)  # (B, T, E)
        encoded = self.encoder(x, lengths=lengths)  # outputs (B, T, K*H)
        mask = None if lengths is None else lengths_to_mask(lengths, T, tokens.device)  # (B, T)
        pooled, attention = self.pooling(encoded, mask)  # (B, F), (B, T) or None
        logits = self.head(self.output_dropout(pooled))  # (B, 1) or (B, C)
        return ClassifierOutput(logits.squeeze(-1) if self.config.head == "binary" else logits, attention)

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
