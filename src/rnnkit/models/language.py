"""LanguageModel: next-token prediction over characters, words or subwords, with AWD-LSTM's regularisers.

    model = build_model({"name": "language_model", "vocab_size": 96, "weight_drop": 0.5})
    logits, state = model(tokens)                       # tokens (B, T) -> logits (B, T, V)
    loss, state = model.loss(tokens[:, :-1], tokens[:, 1:], state=state)   # mean CE in nats
    probs, state = model.predict(prompt)                # probs[:, -1]: the next token's distribution

Position t of the logits scores token t + 1. Perplexity is exp(loss); bits per token is loss / ln 2.

A conditioned language model (``condition_size``: a float vector of C features; or
``num_conditions``: a class id) starts every sequence from its condition, and with
``condition_inputs`` also reads it beside every token (:mod:`rnnkit.models.conditioning`)::

    model = build_model({"name": "language_model", "vocab_size": 96, "num_conditions": 4})
    logits, state = model(tokens, condition=torch.tensor([0, 3]))   # (B,) class ids: two rows
    logits, state = model(next_tokens, state)           # the state carries each row's condition
    state = model.start(condition)                      # or start explicitly: a ConditionedState
    generate(model, prompt, 20, condition=classes)      # decoding starts from it (beam search too)

Its state is a :class:`~rnnkit.models.conditioning.ConditionedState` (the layers' state and the
condition (1, B, C)), so the decoders' row selection carries each row's condition; a conditioned
model refuses to start without one, and an unconditioned model refuses one. Without these keys a
model is built, named, saved and loaded exactly as before they existed.

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

from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError, warn_user
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.recurrent import split_state, stack_states
from rnnkit.layers.regularization import EmbeddingDropout, LockedDropout, weight_dropped
from rnnkit.models.conditioning import ConditionedState, Conditioning
from rnnkit.models.encoder import MINIMAL, RecurrentConfig, build_encoder, check_tokens, group_parameters
from rnnkit.models.registry import register_model

IGNORE = -100  # the target cross_entropy skips
CONDITION_KEYS = ("condition_size", "num_conditions", "condition_inputs")  # dumped only when set


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
    condition_size: int | None = Field(None, gt=0, description="C: start from a float vector of C features")
    num_conditions: int | None = Field(None, gt=0, description="N: start from a class id in [0, N)")
    condition_inputs: bool = Field(False, description="also feed the condition beside every token")

    @model_validator(mode="after")
    def _options_fit_together(self) -> LanguageModelConfig:
        if self.weight_drop and self.cell in MINIMAL:
            raise ValueError(
                f"weight_drop drops hidden-to-hidden weights, and cell={self.cell!r} has none: set "
                "weight_drop=0 (regularise with hidden_dropout) or use cell='lstm' or 'gru'"
            )
        if self.condition_size is not None and self.num_conditions is not None:
            raise ValueError(
                "condition_size (a feature vector) and num_conditions (a class id) are two kinds of "
                "condition: set one of them"
            )
        if self.condition_inputs and not self.conditioned:
            raise ValueError(
                "condition_inputs feeds the condition beside each token, and there is none: set "
                "condition_size or num_conditions"
            )
        return self

    @property
    def conditioned(self) -> bool:
        return self.condition_size is not None or self.num_conditions is not None

    @model_serializer(mode="wrap")
    def _name_first(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The name first, and the condition keys only when set: an unconditioned model's config
        reads as it did before they existed."""
        data = RecurrentConfig._name_first(self, handler)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in CONDITION_KEYS or v not in (None, False)}
        return data


@register_model("language_model", LanguageModelConfig)
class LanguageModel(nn.Module):
    """Token ids -> logits for the next token at every position, with the recurrent state carried.

    Inputs: tokens (B, T) int64 ids; state: fields (L, B, H) (``LSTMState(h, c)`` for an LSTM,
    ``RNNState(h)`` otherwise) from a previous call, or None for zeros; lengths (B,) or None.
    Outputs: logits (B, T, V) and the state after each sequence's last real token.

    A conditioned model (module docs) takes ``condition`` instead of ``state`` to start: (B, C)
    floats or (B,) class ids; its state is a ``ConditionedState(layers, condition)``.

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
        D = 2 * E if c.condition_inputs else E  # the first layer reads the condition beside each token
        self.layers = nn.ModuleList(
            build_encoder(c.cell, D if i == 0 else H, H, **c.cell_options()) for i in range(c.num_layers)
        )
        self.projection = nn.Linear(H, E, bias=False) if c.tie_weights and H != E else None
        self.decoder = nn.Linear(E if c.tie_weights else H, V)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight  # one Parameter: (V, E)
        self.conditioning = None  # built last, so an unconditioned model draws its weights as before
        if c.conditioned:
            self.conditioning = Conditioning(
                c.condition_size,
                c.num_conditions,
                c.num_layers,
                H,
                type(self.initial_state(1)),
                E if c.condition_inputs else None,
            )

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Zeros: fields (L, B, H), layer 0 first (a conditioned model starts from :meth:`start`)."""
        return stack_states([layer.initial_state(batch_size) for layer in self.layers])

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters bottom to top, for ULMFiT's discriminative rates and gradual unfreezing
        (:mod:`rnnkit.train.finetune`): the embedding (and the conditioning, which also feeds the
        layers), each recurrent layer, then the output (projection, decoder). A tied decoder weight
        is the embedding's and counts there, once; the top group then holds the projection and the
        decoder's bias (fastai's ULMFiT instead puts the tied embedding in the top group)."""
        layers = [[layer] for layer in self.layers]
        return group_parameters(
            [[self.embedding, self.conditioning], *layers, [self.projection, self.decoder]]
        )

    def start(self, condition: Tensor) -> ConditionedState:
        """A conditioned model's start for each row's condition: (B, C) floats or (B,) class ids."""
        if self.conditioning is None:
            raise ConfigError(
                "this language model has no condition (its config sets neither condition_size nor "
                "num_conditions): drop the condition, or train a model with one of those keys"
            )
        return self.conditioning.start(condition)

    def forward(self, tokens: Tensor, state=None, lengths=None, condition=None) -> tuple[Tensor, NamedTuple]:
        c = self.config
        B, T = check_tokens(tokens, c.vocab_size)
        lengths = check_lengths(lengths, B, T)
        layers_state, condition = self._begin(state, condition, B)
        states = (
            [None] * c.num_layers if layers_state is None else split_state(layers_state, [1] * c.num_layers)
        )
        x = self.input_dropout(self.embedding_dropout(self.embedding(tokens), tokens))  # (B, T, E)
        if condition is not None:
            x = self.conditioning.inputs(x, condition)  # (B, T, E) or (B, T, 2E)
        finals = []
        for i, (layer, s) in enumerate(zip(self.layers, states, strict=True)):
            if i > 0:
                x = self.hidden_dropout(x)  # (B, T, H)
            x, s = weight_dropped(layer, c.weight_drop, x, s, lengths)  # (B, T, H); fields (1, B, H)
            finals.append(s)
        x = self.output_dropout(x)  # (B, T, H)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, E)
        final = stack_states(finals)  # fields (L, B, H)
        state = final if condition is None else ConditionedState(final, condition)  # its condition goes on
        return self.decoder(x), state  # (B, T, V)

    def _begin(self, state, condition, B: int) -> tuple[Any, Tensor | None]:
        """The layers' state to go on from and the condition (1, B, C) (None when unconditioned)."""
        if condition is not None:
            if state is not None:
                raise ConfigError(
                    "give a condition to start sequences, or the state to go on with them (it carries "
                    "their condition), not both"
                )
            state = self.start(condition)
        if self.conditioning is None:
            if isinstance(state, ConditionedState):
                raise ConfigError(
                    "this language model has no condition, and the state given carries one: pass the "
                    "state of this model, or None"
                )
            return state, None
        if not isinstance(state, ConditionedState):
            got = "none" if state is None else f"a plain {type(state).__name__}"
            raise ConfigError(
                f"this language model is conditioned ({self.conditioning.extra_repr()}) and got {got}: "
                "pass condition=..., or state=model.start(condition), or the state it returned"
            )
        if state.condition.dim() != 3 or state.condition.shape[1] != B:
            raise ShapeError(
                f"the state carries conditions of shape {tuple(state.condition.shape)}, expected (1, B, C) "
                f"with B = {B}, the rows of the tokens: give one condition per row"
            )
        return state.layers, state.condition

    def loss(
        self, inputs: Tensor, targets: Tensor, lengths=None, state=None, condition=None
    ) -> tuple[Tensor, NamedTuple]:
        """Mean cross-entropy (nats) over the real positions, and the state after the inputs.

        targets (B, T): the token after each input position. With lengths, positions t >= length
        count for nothing, whatever their targets hold. ``condition`` starts a conditioned model.
        """
        logits, state = self(inputs, state, lengths, condition)
        B, T = inputs.shape
        lengths = check_lengths(lengths, B, T)
        real = None if lengths is None else lengths_to_mask(lengths, T, logits.device)  # (B, T)
        targets = self._check_targets(targets, (B, T), real)
        if real is not None:
            targets = targets.masked_fill(~real, IGNORE)  # (B, T): padded positions count for nothing
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE), state

    @torch.no_grad()
    def predict(self, inputs: Tensor, state=None, lengths=None, condition=None) -> tuple[Tensor, NamedTuple]:
        """(probabilities (B, T, V), state), in eval mode without gradients (mode restored).

        Row t is the distribution of the token after position t: ``probs[:, -1]`` continues the
        inputs. Pass the returned state back with the next tokens to go on without re-reading.
        """
        was_training = self.training
        self.eval()
        try:
            logits, state = self(inputs, state, lengths, condition)
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
