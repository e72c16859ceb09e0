"""Timing shared by the benchmarks: candidates run in interleaved rounds, medians compared."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch


def interleaved_medians(
    candidates: dict[str, Callable[[], None]], repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each candidate; one call of each per round, so drift hits all alike."""
    for run in candidates.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def setting() -> str:
    """The facts a reader needs to compare runs: torch, threads, OpenMP wait policy, load."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )


def measure(candidates: dict[str, Callable], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median milliseconds of each candidate called on x, timed in interleaved rounds."""
    medians = interleaved_medians({name: (lambda fn=fn: fn(x)) for name, fn in candidates.items()}, repeats)
    return {name: seconds * 1e3 for name, seconds in medians.items()}
