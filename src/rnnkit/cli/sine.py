"""The seeds' sine-wave example: a noisy sine, windows of 10, an Elman RNN(50, relu) and a linear head.

The seeds' script as it was, kept as a command (``rnnkit sine``); ``configs/sine.yaml`` runs the same
problem through the trainer. It prints the test MSE beside the naive last-value baseline and writes
two plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rnnkit import plots
from rnnkit.data import noisy_sine, sliding_windows, split_by_time
from rnnkit.layers import RNN
from rnnkit.runtime import seed_everything, select_device


class SineRegressor(nn.Module):
    """Many-to-one: the last output of an Elman RNN through a linear head. x (B, T, 1) -> (B, 1)."""

    def __init__(self, hidden_size: int = 50) -> None:
        super().__init__()
        self.rnn = RNN(1, hidden_size, nonlinearity="relu")
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x).outputs[:, -1])  # (B, H) -> (B, 1)


def run(
    out_dir: str | Path = "runs/sine",
    epochs: int = 200,
    lr: float = 0.01,
    seed: int = 0,
    lookback: int = 10,
    device: str | None = None,
    log=print,
) -> dict[str, float]:
    """Train on the first 80% of the windows, report MSE on the last 20%, write plots and metrics."""
    seed_everything(seed)
    dev = select_device(device)
    series = noisy_sine(seed=seed)
    inputs, targets = sliding_windows(series, lookback)  # (S, 10, 1), (S, 1, 1)
    train, test = split_by_time(len(inputs), 0.8)
    x_train, y_train, x_test, y_test = (
        torch.from_numpy(a).to(dev)
        for a in (inputs[train], targets[train, 0], inputs[test], targets[test, 0])
    )
    model = SineRegressor().to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"train": [], "validation (held-out 20%)": []}
    for epoch in range(epochs):
        model.train()
        loss = nn.functional.mse_loss(model(x_train), y_train)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.eval()
        with torch.no_grad():
            val = nn.functional.mse_loss(model(x_test), y_test).item()
        history["train"].append(loss.item())
        history["validation (held-out 20%)"].append(val)
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"epoch {epoch + 1:4d}/{epochs}  train MSE {loss.item():.4f}  validation MSE {val:.4f}")
    with torch.no_grad():
        predicted = model(x_test).cpu().numpy()[:, 0]
    actual, last_value = y_test.cpu().numpy()[:, 0], inputs[test][:, -1, 0]
    metrics = {
        "model_mse": float(np.mean((predicted - actual) ** 2)),
        "last_value_mse": float(np.mean((last_value - actual) ** 2)),
        "train_windows": len(x_train),
        "test_windows": len(x_test),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots.plot_predictions(
        actual,
        {"model": predicted, "last value": last_value},
        out / "predictions.png",
        title="Noisy sine: next value on the test windows",
        xlabel="test window (in time order)",
    )
    plots.plot_loss_curves(history, out / "loss.png", title="Sine RNN: MSE per epoch")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    torch.save(model.state_dict(), out / "model.pt")
    if log:
        log(f"\ntest MSE on {metrics['test_windows']} windows (trained on {metrics['train_windows']}):")
        log(f"  {'Elman RNN(50, relu)':<22}{metrics['model_mse']:.4f}")
        log(f"  {'last value (naive)':<22}{metrics['last_value_mse']:.4f}")
        log(
            f"wrote {out / 'predictions.png'}, {out / 'loss.png'}, {out / 'metrics.json'}, {out / 'model.pt'}"
        )
    return metrics
