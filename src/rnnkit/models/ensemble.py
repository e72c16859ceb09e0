"""ForecastEnsemble: ``members`` forecasters of one config trained side by side, combined by the median.

    model = build_model({"name": "forecast_ensemble", "members": 5, "lookback": 24, "horizon": 6})

The members start from different initial weights (drawn one after another from the seeded RNG)
and see the same batches; the loss is the mean of their losses, so each member's gradient is its
own loss's gradient over ``members`` (the trainer's gradient clipping still acts on all of them at
once). A forecast is the median of the members' point forecasts, an interval the medians of their
bounds; :meth:`member_forecasts` gives each member's, for the spread. An ensemble of one is the
forecaster it holds.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnkit.models.forecast_heads import Interval
from rnnkit.models.forecaster import Forecaster, ForecasterConfig
from rnnkit.models.registry import register_model


class ForecastEnsembleConfig(ForecasterConfig):
    """A :class:`ForecasterConfig` for every member, and how many there are."""

    name: Literal["forecast_ensemble"] = "forecast_ensemble"  # type: ignore[assignment]
    members: int = Field(5, ge=1, description="forecasters trained side by side, combined by the median")

    def member(self) -> ForecasterConfig:
        return ForecasterConfig(**self.model_dump(exclude={"name", "members"}))


@register_model("forecast_ensemble", ForecastEnsembleConfig)
class ForecastEnsemble(nn.Module):
    """Members' forecasts combined by the median (module docs); inputs as :class:`Forecaster`'s."""

    def __init__(self, config: ForecastEnsembleConfig) -> None:
        super().__init__()
        self.config = config
        member = config.member()
        self.members = nn.ModuleList(Forecaster(member) for _ in range(config.members))

    def initial_state(self, batch_size: int):
        return self.members[0].initial_state(batch_size)

    def forward(self, inputs: Tensor, lengths=None, state=None, targets=None) -> tuple[Tensor, None]:
        """params (M, B, horizon, O, P): every member's, stacked; no state (members keep their own)."""
        return torch.stack([m(inputs, lengths, None, targets)[0] for m in self.members]), None

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, None]:
        """The mean of the members' losses."""
        losses = [m.loss(inputs, targets, lengths)[0] for m in self.members]
        return torch.stack(losses).mean(), None

    def member_forecasts(self, inputs: Tensor, lengths=None) -> Tensor:
        """(M, B, horizon, O): each member's point forecast."""
        return torch.stack([m.predict(inputs, lengths) for m in self.members])

    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """(B, horizon, O): the median of the members' point forecasts."""
        return self.member_forecasts(inputs, lengths).median(0).values

    def predict_interval(self, inputs: Tensor, level: float = 0.8, lengths=None) -> Interval:
        """Interval(point, lower, upper): the medians of the members' (B, horizon, O) each."""
        intervals = [m.predict_interval(inputs, level, lengths) for m in self.members]
        return Interval(*(torch.stack(parts).median(0).values for parts in zip(*intervals, strict=True)))
