"""ONNX signatures of the forecasters: one window in, the forecast and its distribution out.

A forecaster's window has a fixed number of rows (lookback, then horizon), so its graph has no time
axis; ``lengths`` (direct and seq2seq strategies) count the observed lookback rows of each window.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.export.graph import Graph, Port, example_lengths


def forecaster(model: nn.Module) -> list[Graph]:
    """A forecaster or a forecast ensemble -> one graph, ``model``: inputs (and lengths) -> forecast
    and each member's forecast (ensemble) or the distribution's parameters (single model)."""
    c = model.config
    rows, D, O, h = c.lookback + c.horizon, c.num_features, c.output_size, c.horizon
    ensemble = c.name == "forecast_ensemble"
    output = (model.members[0] if ensemble else model).output
    takes_lengths = c.strategy != "recursive"
    cards = getattr(c, "static_cardinalities", [])
    what = "lookback rows, then horizon rows (module docs)"
    if cards:
        what += f"; the last {len(cards)} columns: static category codes, 0 .. {[n - 1 for n in cards]}"
    inputs = [Port("inputs", ("B", rows, D), "float32", what)]
    if takes_lengths:
        inputs.append(
            Port("lengths", ("B",), "int64", f"observed rows per window, 1 <= length <= {c.lookback}")
        )
    forecast = Port("forecast", ("B", h, O), "float32", "the point forecast (value, mean or median)")
    if ensemble:
        outputs = (
            forecast,
            Port("members", (c.members, "B", h, O), "float32", "each member's point forecast"),
        )

        def run(m, x, lengths=None):
            members = m.member_forecasts(x, lengths)  # (M, B, horizon, O)
            lower = (members.shape[0] - 1) // 2  # the lower median, as torch.median's (ONNX lacks it)
            return members.sort(0).values[lower], members
    else:
        P = output.num_params
        params = Port("params", ("B", h, O, P), "float32", f"{c.distribution} parameters per value (sorted)")
        outputs = (forecast, params)

        def run(m, x, lengths=None):
            params = m.predict_params(x, lengths)  # (B, horizon, O, P)
            return m.output.point(params), params

    def example(m, B, T, gen):
        x = torch.randn(B, rows, D, generator=gen)
        for i, n in enumerate(cards):  # valid codes, the same on every row of a window
            x[..., D - len(cards) + i] = torch.randint(0, n, (B, 1), generator=gen).float()
        return (x, example_lengths(B, c.lookback, gen)) if takes_lengths else (x,)

    return [Graph("model", tuple(inputs), outputs, run, example)]
