"""rnnkit.MinGRU (sequential and parallel scans) against torch.nn.GRU, measured side by side in one run.

Prints medians (ms) of a training step (forward, backward, Adam) at two shapes, float32, 2 threads:
batch 64 x 100 steps and batch 8 x 4096 steps, input 32, hidden 256. The ratio column is
torch.nn.GRU's time / the candidate's, so above 1 is faster than nn.GRU (the target for MinGRU is
>= 3). Candidates are timed in interleaved rounds so drift on a shared machine hits all of them alike.

    python benchmarks/mingru.py [--repeats 15] [--long-repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from timing import measure, setting
from torch import nn

import rnnkit

D, H = 32, 256
SHAPES = [(64, 100), (8, 4096)]  # (B, T)


def train_step(module: nn.Module):
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(x):
        optimiser.zero_grad(set_to_none=True)
        out = module(x)[0]  # (B, T, H) for both torch.nn.GRU and rnnkit layers
        out.square().mean().backward()
        optimiser.step()

    return step


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'candidate':<40}{'median ms':>10}{'nn.GRU / it':>13}")
    for name, ms in medians.items():
        print(f"  {name:<40}{ms:>10.2f}{medians[reference] / ms:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="rounds at batch 64 x 100 steps")
    parser.add_argument("--long-repeats", type=int, default=5, help="rounds at batch 8 x 4096 steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{setting()}, D={D} H={H}")
    for (B, T), repeats in zip(SHAPES, (args.repeats, args.long_repeats), strict=True):
        candidates = {"torch.nn.GRU": train_step(nn.GRU(D, H, batch_first=True))}
        for scan in ("sequential", "parallel"):
            candidates[f"rnnkit.MinGRU(scan={scan!r})"] = train_step(rnnkit.MinGRU(D, H, scan=scan))
        medians = measure(candidates, torch.randn(B, T, D), repeats)
        table(f"Training step, B={B} T={T}, median of {repeats}", medians, "torch.nn.GRU")


if __name__ == "__main__":
    main()
