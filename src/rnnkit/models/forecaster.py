"""Forecaster: a recurrent encoder over a lookback window, then a direct, recursive or seq2seq head.

    model = build_model({"name": "forecaster", "lookback": 48, "horizon": 12, "num_known": 2})
    params, state = model(inputs)                # inputs (B, 60, 3) -> params (B, 12, 1, 1)
    loss, state = model.loss(inputs, targets)    # targets (B, 12, 1)
    model.predict(inputs)                        # (B, 12, 1)

The input layout, shared with the data pipeline: ``inputs`` is (B, lookback + horizon, D) and each
row is ``[targets (O), past covariates (num_past), known covariates (num_known)]``, so D = O +
num_past + num_known. Rows ``0 .. lookback-1`` are the observed window. In the ``horizon`` rows after
it only the known-future covariates (calendar features, planned prices) are filled; the model never
reads their other columns, so nothing placed there can leak into a forecast.

Strategies (compared by Taieb et al. 2012; seq2seq after Sutskever et al. 2014):

- direct: the encoder's summary of the window and the horizon's known covariates go through one
  linear map to every step at once. Nothing is fed back, so errors do not accumulate.
- recursive: one unidirectional RNN reads the window and steps on through the horizon, reading its
  previous target at each step. Each step reads a target with the known covariates of the step it
  predicts (DeepAR's alignment, Salinas et al. 2020, sec. 3): step t reads [y_t, known_{t+1}] and
  predicts y_{t+1}, so the step reading row ``lookback - 1`` predicts horizon step 0.
- seq2seq: the encoder reads the window; a decoder RNN of the same cell, started from the encoder's
  final state, reads [previous target, known covariates of row lookback + h] at horizon step h.
  A bidirectional encoder's final state reaches the decoder through a linear bridge per state field,
  mapping each layer's [forward, backward] (2H) to H.

The fed-back previous target is the truth in training mode (with probability ``teacher_forcing``,
a coin per sequence and step, as in scheduled sampling, Bengio et al. 2015) and the model's own point
forecast (detached) in eval mode or when no targets are given.

Shape letters as in :mod:`rnnkit` (B, T, D, H hidden, L layers, K directions), plus O = output_size,
C = num_known and P = distribution parameters per value; ``lookback`` and ``horizon`` are spelt out.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.forecast_heads import Bridge, Interval, RevIN, RolloutHead, output_distribution
from rnnkit.models.registry import register_model


class ForecasterConfig(EncoderConfig):
    """What a :class:`Forecaster` is built from; stored with a trained model so loading rebuilds it.

    The encoder's keys (cell, hidden_size, num_layers, bidirectional, dropout, ...) are those of
    :class:`rnnkit.models.encoder.EncoderConfig`; the cell is one of rnn, lstm and gru.
    ``input_size`` is derived (output_size + num_past + num_known) and only checked when given.
    ``loss`` applies to ``distribution="point"`` only; ``teacher_forcing`` to the recursive and
    seq2seq strategies only.
    """

    name: Literal["forecaster"] = "forecaster"
    lookback: int = Field(gt=0, description="observed rows per window")
    horizon: int = Field(1, gt=0, description="steps ahead predicted")
    output_size: int = Field(1, gt=0, description="target variables per step (O)")
    num_past: int = Field(0, ge=0, description="covariates observed up to the forecast time only")
    num_known: int = Field(0, ge=0, description="covariates known for the horizon too (C)")
    input_size: int | None = Field(None, gt=0, description="D = output_size + num_past + num_known")
    strategy: Literal["direct", "recursive", "seq2seq"] = "direct"
    distribution: Literal["point", "gaussian", "quantile"] = "point"
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    teacher_forcing: float = Field(1.0, ge=0, le=1, description="P(feed the true previous target)")
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: int = Field(64, gt=0)
    loss: Literal["mse", "mae"] = "mse"
    residual: bool = Field(False, description="direct: predict the change from the last observed targets")
    revin: bool = Field(False, description="normalise each window by its own statistics (RevIN)")
    highway_window: int = Field(
        0, ge=0, description="add a linear autoregression on the last n observed targets (LSTNet); 0: none"
    )
    static_cardinalities: list[int] = Field(
        default_factory=list,
        description="the categories of each static categorical covariate, whose codes (0: a category not "
        "seen in training) are the last columns of every row; each is embedded",
    )
    static_embedding: int = Field(4, gt=0, description="the width of each static categorical's embedding")

    @property
    def num_features(self) -> int:
        """D, the columns of every input row: O + num_past + num_known + one code per static categorical."""
        return self.output_size + self.num_past + self.num_known + len(self.static_cardinalities)

    @property
    def known_width(self) -> int:
        """C, the known columns the network reads: the known covariates, then the static embeddings."""
        return self.num_known + len(self.static_cardinalities) * self.static_embedding

    @field_validator("quantiles")
    @classmethod
    def _valid_quantiles(cls, value: list[float]) -> list[float]:
        if not all(0 < q < 1 for q in value):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {value}")
        if value != sorted(set(value)):
            raise ValueError(f"quantiles must be sorted ascending without repeats: use {sorted(set(value))}")
        if 0.5 not in value:
            raise ValueError(f"quantiles must contain 0.5 (the median is the point forecast), got {value}")
        return value

    @model_validator(mode="after")
    def _options_fit_together(self) -> ForecasterConfig:
        if self.input_size is not None and self.input_size != self.num_features:
            raise ValueError(
                f"input_size={self.input_size} must equal output_size + num_past + num_known = "
                f"{self.output_size} + {self.num_past} + {self.num_known} = {self.num_features}: "
                "drop input_size (it is derived) or fix the column counts"
            )
        if self.loss != "mse" and self.distribution != "point":
            raise ValueError(
                f"loss={self.loss!r} applies to distribution='point' only; distribution="
                f"{self.distribution!r} trains by its own loss (Gaussian NLL or pinball): drop loss"
            )
        if self.teacher_forcing != 1.0 and self.strategy == "direct":
            raise ValueError(
                "teacher_forcing applies to strategy='recursive' or 'seq2seq'; the direct strategy feeds "
                "nothing back: drop teacher_forcing or change the strategy"
            )
        if self.strategy == "recursive" and self.num_past:
            raise ValueError(
                f"strategy='recursive' needs num_past=0, got {self.num_past}: past covariates are unknown "
                "in the horizon, so the rollout cannot read them; use strategy='direct' or 'seq2seq', "
                "or move covariates known in advance to num_known"
            )
        if self.residual and self.strategy != "direct":
            raise ValueError(
                f"residual=True applies to strategy='direct' only, got {self.strategy!r}: the rollout "
                "strategies already read the last observed target; drop residual"
            )
        if self.highway_window > self.lookback:
            raise ValueError(
                f"highway_window={self.highway_window} reads more rows than a window has "
                f"(lookback={self.lookback}): lower highway_window"
            )
        if self.strategy == "recursive" and self.bidirectional:
            raise ValueError(
                "strategy='recursive' needs bidirectional=False: the rollout steps the same RNN forward "
                "in time; use strategy='seq2seq' for a bidirectional encoder"
            )
        return self


@register_model("forecaster", ForecasterConfig)
class Forecaster(nn.Module):
    """Window and horizon rows -> distribution parameters for the next ``horizon`` steps.

    Inputs: inputs (B, lookback + horizon, D) in the layout of the module docstring; lengths (B,)
    or None: real observed rows per window (1 <= length <= lookback; the horizon rows stay at
    ``lookback ..``), for the direct and seq2seq strategies; state: the encoder's starting state
    (fields (L*K, B, H)) or None; targets (B, horizon, O), read only to teacher-force in training.
    Outputs: params (B, horizon, O, P) and the encoder's state after the observed window. P is 1 for
    ``distribution="point"`` (the value), 2 for ``"gaussian"`` (mean, scale > 0), and one per quantile.

    The direct summary is the top layer's output at each window's last real step; for a
    bidirectional encoder, the forward half there and the backward half at step 0, where each
    direction has read the whole window (they equal the top layer's final forward and backward h).

    Example:
        >>> model = Forecaster(ForecasterConfig(lookback=20, horizon=4, output_size=2))
        >>> model(torch.randn(5, 24, 2))[0].shape        # (5, 4, 2, 1)
        >>> model.predict(torch.randn(5, 24, 2)).shape   # (5, 4, 2)
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.output = output_distribution(config.distribution, config.loss, config.quantiles)
        O, C, P = config.output_size, config.known_width, self.output.num_params
        step_size = O + C  # a rollout step reads [previous target, known covariates]
        read = O + config.num_past + C  # a row as the network reads it, the static codes embedded
        self.encoder = config.encoder(step_size if config.strategy == "recursive" else read)
        self.static = nn.ModuleList(
            nn.Embedding(n, config.static_embedding) for n in config.static_cardinalities
        )
        if config.strategy == "direct":
            self.head = nn.Linear(self.encoder.output_size + config.horizon * C, config.horizon * O * P)
        else:
            self.head = RolloutHead(config.hidden_size, O, self.output, config.teacher_forcing)
        self.revin = RevIN(O) if config.revin else None
        self.highway = nn.Linear(config.highway_window, config.horizon) if config.highway_window else None
        if config.strategy == "seq2seq":
            self.decoder = config.encoder(step_size, bidirectional=False)
            fields = len(self.encoder.state_type._fields)
            self.bridge = (
                Bridge(fields, config.num_layers, config.hidden_size) if config.bidirectional else None
            )

    def initial_state(self, batch_size: int) -> NamedTuple:
        """The encoder's starting state: fields (L*K, B, H), batch along dim 1."""
        return self.encoder.initial_state(batch_size)

    def forward(
        self, inputs: Tensor, lengths=None, state: NamedTuple | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, NamedTuple]:
        B = self._check_inputs(inputs)
        if targets is not None:
            self._check_targets(targets, B)
        if lengths is not None and self.config.strategy == "recursive":
            raise ConfigError(
                "strategy='recursive' needs full windows (lengths=None): each step reads the next row's "
                "known covariates, which a padded window does not have there; use strategy='direct' or "
                "'seq2seq' for padded windows"
            )
        lengths = check_lengths(lengths, B, self.config.lookback)
        inputs = self._embedded(inputs)
        O, n = self.config.output_size, self.config.lookback
        if self.revin is not None:  # the model works on each window's own scale (the targets too)
            stats = self.revin.statistics(inputs[:, :n, :O], lengths)
            inputs = torch.cat([self.revin.normalise(inputs[..., :O], *stats), inputs[..., O:]], -1)
            targets = None if targets is None else self.revin.normalise(targets.to(inputs.dtype), *stats)
        strategy = {"direct": self._direct, "recursive": self._recursive, "seq2seq": self._seq2seq}
        params, state = strategy[self.config.strategy](inputs, lengths, state, targets)
        if self.highway is not None:  # + a linear autoregression of each target's last rows
            params = self.output.shift(params, self._highway(inputs, lengths))
        if self.revin is not None:
            params = self.output.rescale(params, *self.revin.inverse(*stats))
        return params, state

    def _highway(self, inputs: Tensor, lengths) -> Tensor:
        """(B, horizon, O): the highway's linear map of each target's last highway_window observed values."""
        O, w = self.config.output_size, self.config.highway_window
        if lengths is None:
            last = inputs[:, self.config.lookback - w : self.config.lookback, :O]  # (B, w, O)
        else:  # a window shorter than w repeats its first row
            rows = (lengths.to(inputs.device)[:, None] - w + torch.arange(w, device=inputs.device)).clamp(
                min=0
            )
            last = inputs[torch.arange(rows.shape[0], device=inputs.device)[:, None], rows, :O]  # (B, w, O)
        return self.highway(last.transpose(1, 2)).transpose(1, 2)  # (B, horizon, O)

    def loss(
        self, inputs: Tensor, targets: Tensor, lengths=None, state: NamedTuple | None = None
    ) -> tuple[Tensor, NamedTuple]:
        """MSE or MAE (point), Gaussian NLL (gaussian) or mean pinball loss (quantile) over every value."""
        params, state = self(inputs, lengths, state, targets)
        return self.output.loss(params, targets.to(params.dtype)), state

    @torch.no_grad()
    def predict_params(self, inputs: Tensor, lengths=None) -> Tensor:
        """params (B, horizon, O, P) in eval mode without gradients, quantiles sorted; mode restored."""
        was_training = self.training
        self.eval()
        try:
            return self.output.sort(self(inputs, lengths)[0])
        finally:
            self.train(was_training)

    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """The point forecast (B, horizon, O): the value, the mean or the median."""
        return self.output.point(self.predict_params(inputs, lengths))

    def predict_interval(self, inputs: Tensor, level: float = 0.8, lengths=None) -> Interval:
        """Interval(point, lower, upper), each (B, horizon, O): a central interval covering ``level``.

        Gaussian: mean -+ z scale, z the normal quantile of (1 + level) / 2. Quantile: the quantiles
        (1 - level) / 2 and (1 + level) / 2, which must be among ``quantiles``.
        """
        self.output.check_interval(level)  # before the forward pass: a wrong level fails fast
        return self.output.interval(self.predict_params(inputs, lengths), level)

    def _direct(self, inputs, lengths, state, targets) -> tuple[Tensor, NamedTuple]:
        c, P = self.config, self.output.num_params
        encoded = self.encoder(inputs[:, : c.lookback], state, lengths)  # outputs (B, lookback, K*H)
        summary = self._last_step(encoded.outputs, lengths)  # (B, K*H)
        if c.known_width:
            future = self._known(inputs[:, c.lookback :]).flatten(1)  # (B, horizon * C)
            summary = torch.cat([summary, future], -1)  # (B, K*H + horizon * C)
        raw = self.head(summary).view(-1, c.horizon, c.output_size, P)  # (B, horizon, O, P)
        params = self.output.constrain(raw)
        if c.residual:  # the head learns the change from persistence (the last observed targets)
            params = self.output.shift(params, self._last_target(inputs, lengths)[:, None])  # + (B, 1, O)
        return params, encoded.state

    def _last_target(self, inputs: Tensor, lengths) -> Tensor:
        """(B, O): the targets at each window's last observed row."""
        O, n = self.config.output_size, self.config.lookback
        if lengths is None:
            return inputs[:, n - 1, :O]
        rows = (lengths.to(inputs.device) - 1).clamp(min=0)  # (B,)
        return inputs[torch.arange(rows.shape[0], device=inputs.device), rows, :O]

    def _recursive(self, inputs, lengths, state, targets) -> tuple[Tensor, NamedTuple]:
        n, O = self.config.lookback, self.config.output_size
        known = self._known(inputs)  # (B, lookback + horizon, C)
        # step t reads y_t beside known_{t+1}, the covariates of the step it predicts
        steps = torch.cat([inputs[:, :n, :O], known[:, 1 : n + 1]], -1)  # (B, lookback, O + C)
        encoded = self.encoder(steps, state)  # outputs (B, lookback, H)
        first = self.head(encoded.outputs[:, -1:])  # (B, 1, O, P): horizon step 0
        if self.config.horizon == 1:
            return first, encoded.state
        truth = None if targets is None else targets.to(first.dtype)  # (B, horizon, O)
        previous = self.head.feedback(first[:, 0], None if truth is None else truth[:, 0])  # (B, O)
        later = None if truth is None else truth[:, 1:]  # (B, horizon - 1, O)
        rest = self.head.rollout(self.encoder, encoded.state, previous, known[:, n + 1 :], later)
        return torch.cat([first, rest], 1), encoded.state  # rest (B, horizon - 1, O, P)

    def _seq2seq(self, inputs, lengths, state, targets) -> tuple[Tensor, NamedTuple]:
        n, O = self.config.lookback, self.config.output_size
        encoded = self.encoder(inputs[:, :n], state, lengths)  # state fields (L*K, B, H)
        last = self._last_step(inputs[:, :n, :O], lengths, both_halves=False)  # (B, O): last observed y
        truth = None if targets is None else targets.to(inputs.dtype)
        known = self._known(inputs[:, n:])  # (B, horizon, C)
        start = encoded.state if self.bridge is None else self.bridge(encoded.state)  # fields (L, B, H)
        return self.head.rollout(self.decoder, start, last, known, truth), encoded.state

    def _embedded(self, inputs: Tensor) -> Tensor:
        """(B, T, D) with the static categoricals' codes last -> (B, T, O + num_past + C): each code
        replaced by its embedding (the same on every row of a window)."""
        if not self.static:
            return inputs
        k = len(self.static)
        codes = inputs[..., -k:].round().long()  # (B, T, k)
        sizes = torch.tensor([e.num_embeddings for e in self.static], device=codes.device)
        if not torch.compiler.is_compiling() and bool(((codes < 0) | (codes >= sizes)).any()):  # eager only
            raise DataError(
                f"static category codes must lie in 0 .. cardinality - 1 {self.config.static_cardinalities}; "
                "pass the columns as the forecast task codes them"
            )
        embedded = [table(codes[..., i]) for i, table in enumerate(self.static)]  # each (B, T, E)
        return torch.cat([inputs[..., :-k], *embedded], -1)

    def _known(self, rows: Tensor) -> Tensor:
        """(B, n, D) -> the known covariates (B, n, C); width 0 when num_known is 0."""
        return rows[..., self.config.output_size + self.config.num_past :]

    def _last_step(self, outputs: Tensor, lengths, both_halves: bool = True) -> Tensor:
        """outputs (B, T, F) -> (B, F) at the last real step; bidirectional: the backward half at step 0."""
        if lengths is None:
            at_last = outputs[:, -1]  # (B, F)
        else:
            last = lengths.to(outputs.device) - 1  # (B,)
            at_last = outputs[torch.arange(last.shape[0], device=outputs.device), last]  # (B, F)
        if not (both_halves and self.config.bidirectional):
            return at_last
        H = self.config.hidden_size
        return torch.cat([at_last[:, :H], outputs[:, 0, H:]], -1)  # (B, 2H)

    def _check_inputs(self, inputs) -> int:
        c = self.config
        expected = f"(B, lookback + horizon, D) = (B, {c.lookback + c.horizon}, {c.num_features})"
        if not isinstance(inputs, Tensor):
            raise ShapeError(f"inputs must be a torch.Tensor {expected}, got {type(inputs).__name__}")
        got = tuple(inputs.shape)
        if inputs.dim() != 3 or got[1:] != (c.lookback + c.horizon, c.num_features):
            fix = ""
            if inputs.dim() == 3 and got[1] == c.lookback:
                fix = ": append the horizon rows (known covariates filled, the other columns zero)"
            raise ShapeError(f"inputs must be {expected}, got {got}{fix}")
        return got[0]

    def _check_targets(self, targets, batch_size: int) -> None:
        expected = (batch_size, self.config.horizon, self.config.output_size)
        if not isinstance(targets, Tensor) or tuple(targets.shape) != expected:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            fix = " (add the last axis with targets.unsqueeze(-1))" if got == expected[:2] else ""
            raise ShapeError(f"targets must be (B, horizon, output_size) = {expected}, got {got}{fix}")
