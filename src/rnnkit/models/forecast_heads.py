"""The parts of a forecaster on top of its encoder: output distributions, the rollout head, the bridge.

What a forecaster's outputs mean: a point, a Gaussian or a set of quantiles per predicted value. Each
output kind turns P raw numbers per value into its parameters, scores them against the truth,
and reads a point forecast and an interval from them:

    output = output_distribution("gaussian")
    params = output.constrain(raw)                      # raw (B, horizon, O, 2) -> (mean, scale)
    loss = output.loss(params, targets)                 # targets (B, horizon, O)
    point, lower, upper = output.interval(params, 0.8)  # each (B, horizon, O)

Shape letters as in :mod:`rnnkit`, plus O = output_size (targets per step) and P = parameters per
value (1 point, 2 Gaussian, one per quantile). ``params[..., p]`` is parameter p.

:class:`RolloutHead` maps each step of a recursive or seq2seq forecaster to its parameters and steps an
RNN through the horizon; :class:`Bridge` hands a bidirectional encoder's state to a decoder.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError

POINT_LOSSES = {"mse": nn.functional.mse_loss, "mae": nn.functional.l1_loss}
MIN_SCALE = 1e-4  # keeps the Gaussian NLL finite when the network drives the scale towards zero
NO_INTERVAL = (
    "a point forecaster has no intervals: build it with distribution='gaussian' or "
    "distribution='quantile' to get predict_interval"
)


class Interval(NamedTuple):
    """A point forecast and the bounds of a central prediction interval, each (B, horizon, O)."""

    point: Tensor
    lower: Tensor
    upper: Tensor


def check_level(level: float) -> float:
    """A central interval's coverage must be a probability strictly between 0 and 1."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"level must be a coverage in (0, 1), e.g. 0.8 for an 80% interval; got {level!r}")
    return float(level)


class PointOutput:
    """P = 1: the value itself, trained by mean squared (``"mse"``) or absolute (``"mae"``) error."""

    num_params = 1

    def __init__(self, loss: str = "mse") -> None:
        self.loss_name = loss

    def constrain(self, raw: Tensor) -> Tensor:
        return raw

    def loss(self, params: Tensor, targets: Tensor) -> Tensor:
        return POINT_LOSSES[self.loss_name](params[..., 0], targets)

    def point(self, params: Tensor) -> Tensor:
        return params[..., 0]  # (B, horizon, O)

    def sort(self, params: Tensor) -> Tensor:
        return params

    def shift(self, params: Tensor, offset: Tensor) -> Tensor:
        """Move the value by offset (B, 1, O) or (B, horizon, O)."""
        return params + offset[..., None]

    def rescale(self, params: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
        """value * scale + offset, scale > 0 and offset (B, 1, O)."""
        return params * scale[..., None] + offset[..., None]

    def check_interval(self, level: float) -> None:
        raise ConfigError(NO_INTERVAL)

    def interval(self, params: Tensor, level: float) -> Interval:
        raise ConfigError(NO_INTERVAL)


class GaussianOutput:
    """P = 2: mean and scale, scale = softplus(raw) + 1e-4; trained by the Gaussian negative log-likelihood.

    NLL = log(scale) + (y - mean)^2 / (2 scale^2) + log(2 pi) / 2, averaged over every value: the full
    likelihood with its constant, as ``gaussian_nll_loss(mean, y, scale**2, full=True)`` (DeepAR,
    Salinas et al. 2020, sec. 3.1). The interval is mean +- z scale with z the normal quantile of
    (1 + level) / 2 (1.2816 for level 0.8).
    """

    num_params = 2

    def constrain(self, raw: Tensor) -> Tensor:
        mean, scale = raw.unbind(-1)  # (B, horizon, O) each
        return torch.stack([mean, nn.functional.softplus(scale) + MIN_SCALE], -1)  # (B, horizon, O, 2)

    def loss(self, params: Tensor, targets: Tensor) -> Tensor:
        mean, scale = params.unbind(-1)  # (B, horizon, O) each
        nll = scale.log() + 0.5 * ((targets - mean) / scale) ** 2 + 0.5 * math.log(2 * math.pi)
        return nll.mean()

    def point(self, params: Tensor) -> Tensor:
        return params[..., 0]

    def sort(self, params: Tensor) -> Tensor:
        return params

    def shift(self, params: Tensor, offset: Tensor) -> Tensor:
        """Move the location (value or mean) by offset (B, 1, O) or (B, horizon, O); the scale stays."""
        return torch.cat([params[..., :1] + offset[..., None], params[..., 1:]], -1)

    def rescale(self, params: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
        """The distribution of value * scale + offset: mean * scale + offset, scale * scale (scale > 0)."""
        mean, spread = params.unbind(-1)
        return torch.stack([mean * scale + offset, spread * scale], -1)

    def check_interval(self, level: float) -> None:
        check_level(level)

    def interval(self, params: Tensor, level: float) -> Interval:
        z = statistics.NormalDist().inv_cdf((1 + check_level(level)) / 2)
        mean, scale = params.unbind(-1)  # (B, horizon, O) each
        return Interval(mean, mean - z * scale, mean + z * scale)


class QuantileOutput:
    """P = len(quantiles): one value per quantile level, trained by the mean pinball loss.

    pinball_q(y, yhat) = max(q (y - yhat), (q - 1)(y - yhat)) (Koenker & Bassett 1978), averaged over
    every value and quantile. The network may output crossing quantiles; :meth:`sort` orders them
    at prediction time, so the point (the median) and the bounds never cross.
    """

    def __init__(self, quantiles: Sequence[float]) -> None:
        self.quantiles = list(quantiles)
        self.num_params = len(self.quantiles)
        self.median = self._index(0.5)
        if self.median is None:
            raise ConfigError(
                f"quantiles must contain 0.5 (the median is the point forecast), got {quantiles}"
            )

    def constrain(self, raw: Tensor) -> Tensor:
        return raw

    def loss(self, params: Tensor, targets: Tensor) -> Tensor:
        q = params.new_tensor(self.quantiles)  # (P,)
        error = targets.unsqueeze(-1) - params  # (B, horizon, O, P)
        return torch.maximum(q * error, (q - 1) * error).mean()

    def sort(self, params: Tensor) -> Tensor:
        return params.sort(-1).values

    def shift(self, params: Tensor, offset: Tensor) -> Tensor:
        """Move every quantile by offset (B, 1, O) or (B, horizon, O)."""
        return params + offset[..., None]

    def rescale(self, params: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
        """Every quantile of value * scale + offset (a scale > 0 keeps their order)."""
        return params * scale[..., None] + offset[..., None]

    def point(self, params: Tensor) -> Tensor:
        return self.sort(params)[..., self.median]  # (B, horizon, O)

    def check_interval(self, level: float) -> tuple[int, int]:
        """The indices of the quantiles (1 - level) / 2 and (1 + level) / 2; a ConfigError if absent."""
        level = check_level(level)
        low, high = self._index((1 - level) / 2), self._index((1 + level) / 2)
        if low is None or high is None:
            available = [
                round(1 - 2 * q, 12) for q in self.quantiles if q < 0.5 and self._index(1 - q) is not None
            ]
            raise ConfigError(
                f"level {level} needs quantiles {(1 - level) / 2:g} and {(1 + level) / 2:g}, but the model "
                f"has {self.quantiles}: available levels are {available}; add the quantiles to "
                "`quantiles` and retrain"
            )
        return low, high

    def interval(self, params: Tensor, level: float) -> Interval:
        low, high = self.check_interval(level)
        ordered = self.sort(params)
        return Interval(ordered[..., self.median], ordered[..., low], ordered[..., high])

    def _index(self, q: float) -> int | None:
        return next((i for i, v in enumerate(self.quantiles) if math.isclose(v, q, abs_tol=1e-9)), None)


OutputDistribution = PointOutput | GaussianOutput | QuantileOutput


def output_distribution(
    name: str, loss: str = "mse", quantiles: Sequence[float] = (0.1, 0.5, 0.9)
) -> OutputDistribution:
    """The output kind named by a forecaster config's ``distribution``."""
    if name == "point":
        return PointOutput(loss)
    if name == "gaussian":
        return GaussianOutput()
    if name == "quantile":
        return QuantileOutput(quantiles)
    raise ConfigError(f"unknown distribution {name!r}; expected 'point', 'gaussian' or 'quantile'")


class RolloutHead(nn.Module):
    """The per-step head of the recursive and seq2seq strategies, and their step loop over the horizon.

    ``head(outputs)`` maps RNN outputs (B, n, H) to params (B, n, O, P). :meth:`rollout` steps an RNN
    through the horizon, feeding back the previous target: the truth in training mode with
    probability ``teacher_forcing`` (a coin per sequence and step: scheduled sampling, Bengio et al.
    2015), the own point forecast otherwise, detached, as a sampled value is in scheduled sampling.
    """

    def __init__(
        self, hidden_size: int, output_size: int, output: OutputDistribution, teacher_forcing: float = 1.0
    ) -> None:
        super().__init__()
        self.output, self.output_size, self.teacher_forcing = output, output_size, teacher_forcing
        self.linear = nn.Linear(hidden_size, output_size * output.num_params)

    def forward(self, outputs: Tensor) -> Tensor:
        raw = self.linear(outputs).unflatten(-1, (self.output_size, self.output.num_params))  # (B, n, O, P)
        return self.output.constrain(raw)

    def rollout(
        self, rnn: nn.Module, state: NamedTuple, previous: Tensor, known: Tensor, truth: Tensor | None
    ) -> Tensor:
        """Step ``rnn`` from ``state``: step h reads [previous (B, O), known[:, h] (B, C)] -> its params.

        ``truth`` (B, n, O) holds the true target of each step, or None. Returns (B, n, O, P) for the
        n = known.shape[1] steps. Fully teacher-forced training runs the n steps in one call.
        """
        if truth is not None and self.training and self.teacher_forcing == 1.0:
            # each step reads the truth of the step before it; the first reads ``previous``
            fed = torch.cat([previous.unsqueeze(1), truth[:, :-1]], 1)  # (B, n, O)
            return self(rnn(torch.cat([fed, known], -1), state).outputs)  # (B, n, O, P)
        steps = []
        for h in range(known.shape[1]):
            out, state = rnn(torch.cat([previous, known[:, h]], -1).unsqueeze(1), state)  # (B, 1, H)
            steps.append(self(out))  # (B, 1, O, P)
            previous = self.feedback(steps[-1][:, 0], None if truth is None else truth[:, h])
        return torch.cat(steps, 1)  # (B, n, O, P)

    def feedback(self, params: Tensor, true: Tensor | None) -> Tensor:
        """The previous target for the next step (B, O), from this step's params (B, O, P) and truth."""
        own = self.output.point(params).detach()  # (B, O)
        p = self.teacher_forcing
        if true is None or not self.training or p == 0:
            return own
        if p == 1:
            return true
        use_true = torch.rand(own.shape[0], 1, device=own.device) < p  # (B, 1)
        return torch.where(use_true, true, own)


class Bridge(nn.Module):
    """A bidirectional encoder's final state -> a unidirectional decoder's initial state.

    Each state field (L*2, B, H) in torch's order (layer 0 forward, layer 0 backward, ...) becomes
    (L, B, H): per layer, one linear map of [forward, backward] (2H) to H, one map per field (h, and
    c for an LSTM), shared by the layers.
    """

    def __init__(self, num_fields: int, num_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.maps = nn.ModuleList(nn.Linear(2 * hidden_size, hidden_size) for _ in range(num_fields))

    def forward(self, state: NamedTuple) -> NamedTuple:
        fields = []
        for field, linear in zip(state, self.maps, strict=True):
            both = field.unflatten(0, (self.num_layers, 2)).permute(0, 2, 1, 3).flatten(2)  # (L, B, 2H)
            fields.append(linear(both))  # (L, B, H)
        return type(state)(*fields)


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022) of the target columns, window by window.

    Each window's targets are centred and scaled by their own mean and standard deviation over its
    observed rows, then by a learned affine map (gamma > 0 per target, kept as log gamma, and beta);
    the forecast goes back through the inverse. A series that drifts beyond the range of the training
    part then looks like the windows the model saw, and its level comes back with the forecast.
    """

    def __init__(self, num_targets: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(num_targets))  # (O,)
        self.beta = nn.Parameter(torch.zeros(num_targets))  # (O,)

    def statistics(self, window: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """window (B, T, O) -> mean and std (B, 1, O) over each window's first ``lengths`` rows."""
        if lengths is None:
            mean = window.mean(1, keepdim=True)
            var = window.var(1, unbiased=False, keepdim=True)
        else:
            T = window.shape[1]
            mask = (torch.arange(T, device=window.device) < lengths.to(window.device)[:, None])[..., None]
            count = mask.sum(1, keepdim=True).to(window.dtype)  # (B, 1, 1)
            mean = (window * mask).sum(1, keepdim=True) / count
            var = (((window - mean) * mask) ** 2).sum(1, keepdim=True) / count
        return mean.detach(), (var + self.eps).sqrt().detach()

    def normalise(self, values: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """values (B, n, O) -> (values - mean) / std * gamma + beta."""
        return (values - mean) / std * self.log_gamma.exp() + self.beta

    def inverse(self, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, offset), each (B, 1, O), with normalised * scale + offset = the original values."""
        scale = std / self.log_gamma.exp()
        return scale, mean - self.beta * scale
