"""Captioner: a feature vector -> a short text, by a conditioned language model over the text's tokens.

    model = build_model({"name": "captioner", "input_size": 64, "vocab_size": 30})
    loss, _ = model.loss(features, targets)        # (B, F); (B, S) ids, eos last, -100 after it
    condition = model.encode(features)              # (B, C): the encoder's vector, the decoder's condition
    generate(model.decoder, bos, 40, condition=condition, greedy=True)   # or beam_generate(...)

An encoder turns the features into the condition vector: an MLP of ``encoder_sizes`` (each layer
Linear, ReLU, dropout), or, with ``encoder_sizes: []``, nothing, so features computed by any
encoder of your own (a CNN's image embedding, a sentence vector) are the condition as they are.
The decoder is a :class:`~rnnkit.models.LanguageModel` with ``condition_size`` C, the encoder's
output: the condition sets the start state of its every layer and, with ``condition_inputs``
(default), is fed beside every token (:mod:`rnnkit.models.conditioning`). Training is teacher
forced: the decoder reads ``bos_id`` then the target tokens but the last, and is scored on every
target token, eos included.

Shape letters as in :mod:`rnnkit`, plus F = input_size, C = the condition's width, S = target tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnkit.errors import DataError, DTypeError, ShapeError
from rnnkit.models.conditioning import ConditionedState
from rnnkit.models.encoder import RecurrentConfig
from rnnkit.models.language import IGNORE, LanguageModel, LanguageModelConfig
from rnnkit.models.registry import register_model


class CaptionerConfig(RecurrentConfig):
    """What a :class:`Captioner` is built from. ``input_size`` and ``vocab_size`` come from the data.

    The recurrent keys (cell, hidden_size, num_layers, layer_norm, init) and ``embedding_dim``,
    ``tie_weights`` and the dropouts are the decoder's, as in
    :class:`~rnnkit.models.LanguageModelConfig`.
    """

    name: Literal["captioner"] = "captioner"
    input_size: int = Field(gt=0, description="F, the features of each example")
    vocab_size: int = Field(gt=0, description="V, the text's token ids 0 .. V-1")
    bos_id: int = Field(2, ge=0, description="the token the decoder reads first (the codec's <bos>)")
    encoder_sizes: list[int] = Field([128], description="the MLP's widths; [] reads the features as they are")
    encoder_dropout: float = Field(0.0, ge=0, lt=1, description="after each encoder layer")
    condition_inputs: bool = Field(True, description="feed the condition beside every token too")
    embedding_dim: int = Field(32, gt=0)
    hidden_size: int = Field(128, gt=0)
    tie_weights: bool = False
    input_dropout: float = Field(0.0, ge=0, lt=1, description="locked, on the embeddings")
    hidden_dropout: float = Field(0.0, ge=0, lt=1, description="locked, between layers")
    output_dropout: float = Field(0.0, ge=0, lt=1, description="locked, before the decoder's output")

    def decoder_config(self) -> LanguageModelConfig:
        """The decoder's config: these keys, conditioned on the encoder's output."""
        shared = self.model_dump(
            include={"cell", "hidden_size", "num_layers", "layer_norm", "init", "vocab_size", "embedding_dim"}
            | {"tie_weights", "input_dropout", "hidden_dropout", "output_dropout", "condition_inputs"}
        )
        width = self.encoder_sizes[-1] if self.encoder_sizes else self.input_size
        return LanguageModelConfig(**shared, condition_size=width)


@register_model("captioner", CaptionerConfig)
class Captioner(nn.Module):
    """Features (B, F) -> the logits of their texts' tokens, by an encoder and a conditioned decoder.

    Inputs of ``loss``: features (B, F) float; targets (B, S) token ids ending in eos, padded with
    -100 after it. ``encode`` gives the condition (B, C), ``start`` the decoder's state for it; the
    decoder (``model.decoder``) is a LanguageModel, so ``rnnkit.decoding.generate`` and
    ``beam_generate`` decode with it, given ``condition=model.encode(features)``.
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = c = config
        layers, width = [], c.input_size
        for size in c.encoder_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(c.encoder_dropout)]
            width = size
        self.encoder = nn.Sequential(*layers)  # (B, F) -> (B, C); empty: the features themselves
        self.decoder = LanguageModel(c.decoder_config())

    def initial_state(self, batch_size: int) -> None:
        """None: each example starts from its own features, and nothing is carried between batches."""
        return None

    def encode(self, features: Tensor) -> Tensor:
        """features (B, F) -> the condition (B, C) the decoder starts from."""
        width = self.config.input_size  # F
        if not isinstance(features, Tensor):
            raise ShapeError(f"features must be a torch.Tensor (B, {width}), got {type(features).__name__}")
        if not features.is_floating_point():
            raise DTypeError(f"features must be floats (B, {width}), got dtype {features.dtype}")
        if features.dim() != 2 or features.shape[1] != width or len(features) == 0:
            raise ShapeError(f"features must be (B, {width}) with B >= 1; got shape {tuple(features.shape)}")
        if not torch.compiler.is_exporting() and not bool(torch.isfinite(features).all()):
            raise DataError("features hold NaN or infinity; fill them before captioning")
        weight = self.decoder.embedding.weight
        return self.encoder(features.to(device=weight.device, dtype=weight.dtype))  # (B, C)

    def start(self, features: Tensor) -> ConditionedState:
        """The decoder's state for each example: its layers' start and the condition it carries."""
        return self.decoder.start(self.encode(features))

    def forward(self, features: Tensor, tokens: Tensor, lengths=None) -> tuple[Tensor, ConditionedState]:
        """Teacher forcing: the decoder reads ``tokens`` (B, T) from the features' start -> (B, T, V)."""
        return self.decoder(tokens, lengths=lengths, condition=self.encode(features))

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, None]:
        """Mean cross-entropy (nats) over the real target tokens, and None (nothing is carried).

        inputs: features (B, F); targets (B, S) as in the class docs. ``lengths`` and ``state`` are
        unused: a row's length is where its -100 padding starts.
        """
        condition = self.encode(inputs)  # (B, C)
        real = self._check_targets(targets, len(condition))  # (B, S)
        bos = targets.new_full((len(targets), 1), self.config.bos_id)  # (B, 1)
        tokens = torch.cat([bos, targets[:, :-1]], 1).masked_fill(~real, 0)  # (B, S): t reads target t-1
        loss, _ = self.decoder.loss(tokens, targets, lengths=real.sum(1), condition=condition)
        return loss, None

    def _check_targets(self, targets, B: int) -> Tensor:
        """targets (B, S) integer ids, each row real tokens then -100 only: the real mask (B, S)."""
        if not isinstance(targets, Tensor) or targets.dim() != 2 or targets.shape[0] != B:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(f"targets must be (B, S) = ({B}, S) token ids, one row per example; got {got}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise DTypeError(f"targets must be integer token ids (torch.long), got dtype {targets.dtype}")
        real = targets != IGNORE  # (B, S)
        if bool((real[:, 1:] & ~real[:, :-1]).any()) or not bool(real[:, 0].all()):
            raise DataError(
                "each target row must hold at least one token (its eos), then -100 only: pad at the end"
            )
        return real
