"""rnnkit layers against torch.nn, measured side by side in one process.

Prints medians (ms) and ratios for a training step (forward, backward, Adam) and for inference,
batch 64, 100 steps, input 32, hidden 256, float32, 2 threads:
  - rnnkit LSTM/GRU on the fused path vs torch.nn.LSTM/GRU (target ratio <= 1.05);
  - rnnkit's layer-norm LSTM on the cell path vs a plain Python loop over torch.nn.LSTMCell and
    vs fused torch.nn.LSTM.
Candidates are timed in interleaved rounds so drift on a shared machine hits all of them alike.

    python benchmarks/recurrent.py [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

import rnnkit

B, T, D, H = 64, 100, 32, 256


class LSTMCellLoop(nn.Module):
    """The plain Python loop a user would write: nn.LSTMCell stepped over x[:, t]."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(D, H)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], H)
        outputs = []
        for x_t in x.unbind(1):
            h, c = self.cell(x_t, (h, c))
            outputs.append(h)
        return torch.stack(outputs, 1)


def first_output(module):
    def run(x):
        out = module(x)
        return out[0] if isinstance(out, tuple) else out

    return run


def train_step(module):
    forward = first_output(module)
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(x):
        optimiser.zero_grad(set_to_none=True)
        forward(x).square().mean().backward()
        optimiser.step()

    return step


def infer_step(module):
    forward = first_output(module.eval())

    def step(x):
        with torch.inference_mode():
            forward(x)

    return step


def measure(candidates: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    x = torch.randn(B, T, D)
    for fn in candidates.values():
        for _ in range(warmup):
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'candidate':<44}{'median ms':>10}{'ratio':>8}")
    for name, ms in medians.items():
        print(f"  {name:<44}{ms:>10.2f}{ms / medians[reference]:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
        f"B={B} T={T} D={D} H={H}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"median of {args.repeats}"
    )

    for name, ours, theirs in (("LSTM", rnnkit.LSTM, nn.LSTM), ("GRU", rnnkit.GRU, nn.GRU)):
        reference = theirs(D, H, batch_first=True)
        mine = ours(D, H)
        mine.load_state_dict(reference.state_dict())
        assert mine.path == "fused"
        for mode, wrap in (("training step", train_step), ("inference", infer_step)):
            medians = measure(
                {f"torch.nn.{name}": wrap(reference), f"rnnkit.{name} (path={mine.path})": wrap(mine)},
                args.repeats,
            )
            table(f"{name} {mode}: fused path", medians, f"torch.nn.{name}")

    for mode, wrap in (("training step", train_step), ("inference", infer_step)):
        ln_lstm = rnnkit.LSTM(D, H, layer_norm=True)
        candidates = {
            "torch.nn.LSTM (fused)": wrap(nn.LSTM(D, H, batch_first=True)),
            "Python loop over torch.nn.LSTMCell": wrap(LSTMCellLoop()),
            f"rnnkit.LSTM(layer_norm=True) (path={ln_lstm.path})": wrap(ln_lstm),
        }
        table(
            f"Layer-norm LSTM {mode}: cell path", measure(candidates, args.repeats), "torch.nn.LSTM (fused)"
        )


if __name__ == "__main__":
    main()
