"""LanguageModel: next-token prediction over characters, words or subwords, with AWD-LSTM's regularisers.

    model = build_model({"name": "language_model", "vocab_size": 96, "weight_drop": 0.5})
    logits, state = model(tokens)                       # tokens (B, T) -> logits (B, T, V)
    loss, state = model.loss(tokens[:, :-1], tokens[:, 1:], state=state)   # mean CE in nats
    probs, state = model.predict(prompt)                # probs[:, -1]: the next token's distribution

Position t of the logits scores token t + 1. Perplexity is exp(loss); bits per token is loss / ln 2.

The regularisers of AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language
Models"), each active in training only:

- ``embedding_dropout``: drop whole words, i.e. rows of the embedding matrix (sec. 4.3);
- ``input_dropout``: locked dropout on the embedded inputs (sec. 4.2);
- ``hidden_dropout``: locked dropout on each layer's outputs before the next layer (sec. 4.2);
- ``output_dropout``: locked dropout on the top layer's outputs, before the decoder (sec. 4.2);
- ``weight_drop``: DropConnect on every hidden-to-hidden matrix, a fresh mask per forward (sec. 2).
  It needs recurrent weights (cells rnn, lstm, gru). The dropped weights go to the layer's usual
  call, so torch's fused kernel still runs; in eval mode the layer runs untouched.

``tie_weights`` (Inan et al. 2017; Press & Wolf 2017): the decoder's weight *is* the embedding
matrix, one Parameter. The decoder reads E features, so when ``hidden_size != embedding_dim`` the top
layer's outputs go through a linear projection H -> E (no bias) first. AWD-LSTM instead sizes its
last layer to E; we keep one hidden size so the state stacks into one (L, B, H) tensor per field,
the form the trainer's truncated BPTT and token-by-token generation carry (it costs H*E weights).

Shape letters as in :mod:`rnnkit`, plus E = embedding_dim.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import DataError, ShapeError, warn_user
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.recurrent import split_state, stack_states
from rnnkit.layers.regularization import EmbeddingDropout, LockedDropout, weight_dropped
from rnnkit.models.encoder import MINIMAL, RecurrentConfig, build_encoder, check_tokens
from rnnkit.models.registry import register_model

IGNORE = -100  # the target cross_entropy skips


class LanguageModelConfig(RecurrentConfig):
    """What a :class:`LanguageModel` is built from; stored with a trained model so loading rebuilds it.

    ``vocab_size`` comes from the data. The recurrent keys (cell, hidden_size, num_layers,
    layer_norm, init) are those of :class:`rnnkit.models.encoder.RecurrentConfig`; every layer has
    ``hidden_size`` units. A language model reads left to right, so it takes no ``bidirectional``;
    its dropout between layers is ``hidden_dropout`` (locked), not ``dropout``. The dropout rates
    are described in the module docstring; all default to 0 (off). The embedding starts N(0, 1)
    (torch's default), not AWD-LSTM's U(-0.1, 0.1), which was tuned for SGD at lr 30: with Adam, a
    2-layer character model on English text reached 2.6-2.9 validation bits per character after
    200 steps instead of 3.6-4.1 (tied or not); inputs that small leave the first layer's outputs
    nearly constant, and deeper layers stall.
    """

    name: Literal["language_model"] = "language_model"
    vocab_size: int = Field(gt=0, description="V, token ids 0 .. V-1")
    embedding_dim: int = Field(128, gt=0)
    hidden_size: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    tie_weights: bool = True
    embedding_dropout: float = Field(0.0, ge=0, lt=1, description="drop whole words")
    input_dropout: float = Field(0.0, ge=0, lt=1, description="locked, on the embeddings")
    hidden_dropout: float = Field(0.0, ge=0, lt=1, description="locked, between layers")
    output_dropout: float = Field(0.0, ge=0, lt=1, description="locked, before the decoder")
    weight_drop: float = Field(0.0, ge=0, lt=1, description="DropConnect on weight_hh")

    @model_validator(mode="after")
    def _options_fit_together(self) -> LanguageModelConfig:
        if self.weight_drop and self.cell in MINIMAL:
            raise ValueError(
                f"weight_drop drops hidden-to-hidden weights, and cell={self.cell!r} has none: set "
                "weight_drop=0 (regularise with hidden_dropout) or use cell='lstm' or 'gru'"
            )
        return self


@register_model("language_model", LanguageModelConfig)
class LanguageModel(nn.Module):
    """Token ids -> logits for the next token at every position, with the recurrent state carried.

    Inputs: tokens (B, T) int64 ids; state: fields (L, B, H) (``LSTMState(h, c)`` for an LSTM,
    ``RNNState(h)`` otherwise) from a previous call, or None for zeros; lengths (B,) or None.
    Outputs: logits (B, T, V) and the state after each sequence's last real token.

    Example:
        >>> model = LanguageModel(LanguageModelConfig(vocab_size=50, hidden_size=64, num_layers=2))
        >>> logits, state = model(torch.randint(0, 50, (4, 16)))
        >>> logits.shape, state.h.shape                # (4, 16, 50), (2, 4, 64)
        >>> logits, state = model(torch.randint(0, 50, (4, 1)), state)   # one more step
    """

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        c = self.config = config
        V, E, H = c.vocab_size, c.embedding_dim, c.hidden_size
        if c.hidden_dropout and c.num_layers == 1:
            warn_user(f"hidden_dropout={c.hidden_dropout} acts between layers, and num_layers=1 has none")
        self.embedding = nn.Embedding(V, E)
        self.embedding_dropout = EmbeddingDropout(V, c.embedding_dropout)
        self.input_dropout = LockedDropout(c.input_dropout)
        self.hidden_dropout = LockedDropout(c.hidden_dropout)
        self.output_dropout = LockedDropout(c.output_dropout)
        self.layers = nn.ModuleList(
            build_encoder(c.cell, E if i == 0 else H, H, **c.cell_options()) for i in range(c.num_layers)
        )
        self.projection = nn.Linear(H, E, bias=False) if c.tie_weights and H != E else None
        self.decoder = nn.Linear(E if c.tie_weights else H, V)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight  # one Parameter: (V, E)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Zeros: fields (L, B, H), layer 0 first."""
        return stack_states([layer.initial_state(batch_size) for layer in self.layers])

    def forward(self, tokens: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        c = self.config
        B, T = check_tokens(tokens, c.vocab_size)
        lengths = check_lengths(lengths, B, T)
        states = [None] * c.num_layers if state is None else split_state(state, [1] * c.num_layers)
        x = self.input_dropout(self.embedding_dropout(self.embedding(tokens), tokens))  # (B, T, E)
        finals = []
        for i, (layer, s) in enumerate(zip(self.layers, states, strict=True)):
            if i > 0:
                x = self.hidden_dropout(x)  # (B, T, H)
            x, s = weight_dropped(layer, c.weight_drop, x, s, lengths)  # (B, T, H); fields (1, B, H)
            finals.append(s)
        x = self.output_dropout(x)  # (B, T, H)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, E)
        return self.decoder(x), stack_states(finals)  # (B, T, V); fields (L, B, H)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, NamedTuple]:
        """Mean cross-entropy (nats) over the real positions, and the state after the inputs.

        targets (B, T): the token after each input position. With lengths, positions t >= length
        count for nothing, whatever their targets hold.
        """
        logits, state = self(inputs, state, lengths)
        B, T = inputs.shape
        lengths = check_lengths(lengths, B, T)
        real = None if lengths is None else lengths_to_mask(lengths, T, logits.device)  # (B, T)
        targets = self._check_targets(targets, (B, T), real)
        if real is not None:
            targets = targets.masked_fill(~real, IGNORE)  # (B, T): padded positions count for nothing
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE), state

    @torch.no_grad()
    def predict(self, inputs: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        """(probabilities (B, T, V), state), in eval mode without gradients (mode restored).

        Row t is the distribution of the token after position t: ``probs[:, -1]`` continues the
        inputs. Pass the returned state back with the next tokens to go on without re-reading.
        """
        was_training = self.training
        self.eval()
        try:
            logits, state = self(inputs, state, lengths)
        finally:
            self.train(was_training)
        return torch.softmax(logits, -1), state

    def _check_targets(self, targets, shape: tuple[int, int], real: Tensor | None) -> Tensor:
        if not isinstance(targets, Tensor) or tuple(targets.shape) != shape:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(
                f"targets must be (B, T) = {shape} like the inputs, the next token at each step; got {got}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ShapeError(f"targets must be integer token ids (torch.long), got dtype {targets.dtype}")
        bad = (targets < 0) | (targets >= self.config.vocab_size)  # (B, T)
        if real is not None:
            bad &= real
        if bool(bad.any()):
            raise DataError(
                f"target ids must lie in [0, {self.config.vocab_size}) (vocab_size) at real positions; got "
                f"{targets[bad][:5].tolist()}: encode with the vocabulary the model was built for"
            )
        return targets.long()
