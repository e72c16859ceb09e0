"""Forecaster: a recurrent encoder read at each sequence's last real step, and a direct multi-step head.

    model = build_model({"name": "forecaster", "input_size": 3, "horizon": 12})
    predictions, state = model(torch.randn(8, 48, 3))      # (8, 12, 1), the encoder's final state
    loss, state = model.loss(inputs, targets)              # targets (8, 12, 1)

Many-to-one, direct strategy: one linear map turns the encoder's summary of the window into all
``horizon`` future steps at once, so no prediction is fed back as an input (no error accumulation).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from rnnkit.cells.init import check_init
from rnnkit.config import Config
from rnnkit.errors import ShapeError
from rnnkit.layers import GRU, LSTM, RNN
from rnnkit.models.registry import register_model

ENCODERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
LOSSES = {"mse": nn.functional.mse_loss, "mae": nn.functional.l1_loss}


class ForecasterConfig(Config):
    """What a :class:`Forecaster` is built from; stored with a trained model so loading rebuilds it.

    ``dropout`` acts between stacked layers and is ignored when ``num_layers == 1`` (use
    ``recurrent_dropout`` or ``zoneout`` there); ``nonlinearity`` applies to ``cell="rnn"`` only.
    """

    name: Literal["forecaster"] = "forecaster"
    input_size: int = Field(gt=0, description="features per time step (D)")
    output_size: int = Field(1, gt=0, description="target variables per predicted step")
    horizon: int = Field(1, gt=0, description="steps ahead predicted at once")
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = False
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    dropout: float = Field(0.0, ge=0, lt=1)
    layer_norm: bool = False
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)
    zoneout: float = Field(0.0, ge=0, lt=1)
    init: str = "default"
    loss: Literal["mse", "mae"] = "mse"

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        return check_init(value)

    @model_validator(mode="after")
    def _nonlinearity_needs_rnn(self) -> ForecasterConfig:
        if self.nonlinearity != "tanh" and self.cell != "rnn":
            raise ValueError(
                f"nonlinearity={self.nonlinearity!r} applies to cell='rnn' only, got cell={self.cell!r}: "
                "drop nonlinearity or set cell='rnn'"
            )
        return self


@register_model("forecaster", ForecasterConfig)
class Forecaster(nn.Module):
    """Window of past steps -> the next ``horizon`` steps of ``output_size`` targets.

    Inputs: inputs (B, T, D); lengths (B,) or None (outputs are read at step ``lengths - 1``);
    state: the encoder's state (fields (L*K, B, H)) from a previous chunk, or None.
    Outputs: predictions (B, horizon, output_size) and the encoder's final state.

    The summary fed to the head is the top layer's output at each sequence's last real step. For a
    bidirectional encoder that is the forward half at step ``length - 1`` concatenated with the
    backward half at step 0: each is the point where its direction has read the whole sequence
    (the backward half at ``length - 1`` has read one step only). These equal the top layer's final
    forward and backward ``h``.

    Example:
        >>> model = Forecaster(ForecasterConfig(input_size=3, horizon=4, output_size=2))
        >>> model(torch.randn(5, 20, 3))[0].shape       # (5, 4, 2)
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        options = dict(
            layer_norm=config.layer_norm,
            recurrent_dropout=config.recurrent_dropout,
            zoneout=config.zoneout,
            init=config.init,
        )
        if config.cell == "rnn":
            options["nonlinearity"] = config.nonlinearity
        if config.num_layers > 1:  # between layers only; layers warn when it would do nothing
            options["dropout"] = config.dropout
        self.encoder = ENCODERS[config.cell](
            config.input_size, config.hidden_size, config.num_layers, config.bidirectional, **options
        )
        self.head = nn.Linear(self.encoder.output_size, config.horizon * config.output_size)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """The encoder's starting state: fields (L*K, B, H), batch along dim 1."""
        return self.encoder.initial_state(batch_size)

    def forward(
        self, inputs: Tensor, lengths=None, state: NamedTuple | None = None
    ) -> tuple[Tensor, NamedTuple]:
        encoded = self.encoder(inputs, state, lengths)  # outputs (B, T, K*H)
        summary = self._last_step(encoded.outputs, lengths)  # (B, K*H)
        predictions = self.head(summary)  # (B, horizon * output_size)
        shape = (-1, self.config.horizon, self.config.output_size)
        return predictions.view(shape), encoded.state  # (B, horizon, output_size)

    def loss(
        self, inputs: Tensor, targets: Tensor, lengths=None, state: NamedTuple | None = None
    ) -> tuple[Tensor, NamedTuple]:
        """Mean squared (``loss="mse"``) or absolute (``"mae"``) error over every predicted value."""
        predictions, state = self(inputs, lengths, state)
        if not isinstance(targets, Tensor) or targets.shape != predictions.shape:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            fix = " (add the last axis with targets.unsqueeze(-1))" if got == predictions.shape[:2] else ""
            raise ShapeError(
                f"targets must be (B, horizon, output_size) = {tuple(predictions.shape)}, got {got}{fix}"
            )
        return LOSSES[self.config.loss](predictions, targets.to(predictions.dtype)), state

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """Predictions (B, horizon, output_size) in eval mode, without gradients; the mode is restored."""
        was_training = self.training
        self.eval()
        try:
            return self(inputs, lengths)[0]
        finally:
            self.train(was_training)

    def _last_step(self, outputs: Tensor, lengths) -> Tensor:
        """outputs (B, T, K*H) -> (B, K*H): forward half at the last real step, backward half at step 0."""
        if lengths is None:
            at_last = outputs[:, -1]  # (B, K*H)
        else:
            last = torch.as_tensor(lengths).to(outputs.device, torch.long) - 1  # (B,)
            at_last = outputs[torch.arange(len(last), device=outputs.device), last]  # (B, K*H)
        if not self.config.bidirectional:
            return at_last
        H = self.config.hidden_size
        return torch.cat([at_last[:, :H], outputs[:, 0, H:]], -1)  # (B, 2H)
