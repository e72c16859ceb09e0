"""Forecasting many series with one global model: memory and time of one epoch as the table grows.

A seeded generator writes N daily series to a parquet file (``id``, ``date``, ``value``). Series i
has its own level, trend, weekly and yearly seasonality and noise, and its own length: between
half and all of ``--days`` days, all ending on the same day (so they start on different dates):

    value_t = level_i * (1 + trend_i t / 365) * (1 + a_i sin(2 pi t / 7 + p_i)
              + b_i sin(2 pi t / 365.25 + q_i)) + noise_i e_t,   e_t ~ N(0, 1)

with level ~ LogNormal(3, 1), trend ~ N(0, 0.1), a ~ U(0, 0.3), b ~ U(0, 0.5), noise = 5% of the
level. Each N runs in a fresh process: ``rnnkit``'s forecast task reads the file, fits the scalers
on the training rows, and one epoch of a GRU of 32 (lookback 28, horizon 7) trains on every window
(batch ``--batch-size``), then the test part is forecast. Printed per N: the table's own size in
float32 (rows x value columns x 4 bytes), wall time of reading and preparing, of the epoch and of the
evaluation, training steps and rows (windows) per second, and the process's peak resident memory.

``--raw`` also times, at the largest N, a plain loop over pre-built tensors of the same batches
(the same model, loss and optimiser, no data pipeline): the floor rnnkit's training rows per second
is compared with (target: within 1.5x).

    python benchmarks/forecast_scale.py [--series 100 1000 10000 30000] [--days 1000] [--raw]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def generate(n_series: int, days: int, seed: int = 0) -> pd.DataFrame:
    """The module docs' N series, stacked, one row a series and day."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(days // 2, days + 1, n_series)  # (N,)
    end = pd.Timestamp("2026-01-01")
    level = rng.lognormal(3.0, 1.0, n_series)
    trend, a, b = rng.normal(0, 0.1, n_series), rng.uniform(0, 0.3, n_series), rng.uniform(0, 0.5, n_series)
    p, q = rng.uniform(0, 2 * np.pi, n_series), rng.uniform(0, 2 * np.pi, n_series)
    rows = int(lengths.sum())
    series = np.repeat(np.arange(n_series), lengths)  # (R,)
    t = np.arange(rows) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (R,) day within its series
    t_end = np.repeat(lengths, lengths) - 1 - t  # days before the last
    s = series
    value = level[s] * (1 + trend[s] * t / 365) * (
        1 + a[s] * np.sin(2 * np.pi * t / 7 + p[s]) + b[s] * np.sin(2 * np.pi * t / 365.25 + q[s])
    ) + 0.05 * level[s] * rng.standard_normal(rows)
    return pd.DataFrame(
        {
            "id": pd.Categorical.from_codes(series, [f"s{i:05d}" for i in range(n_series)]),
            "date": end - pd.to_timedelta(t_end, unit="D"),
            "value": value.astype(np.float32),
        }
    )


def child(path: str, batch_size: int, stride: int, raw: bool) -> dict:
    """One measurement in this process: prepare, one epoch, evaluation (and the raw loop)."""
    import torch

    from rnnkit.models import build_model
    from rnnkit.run import resolve_model, run_config
    from rnnkit.tasks import get_task
    from rnnkit.train.trainer import Trainer

    torch.set_num_threads(2)
    peak = _peak_gib
    runtime = peak()  # python, torch, pandas and rnnkit imported: before any data
    raw_config = {
        "task": "forecast",
        "out_dir": str(Path(path).parent / "run"),
        "data": {"path": path, "time_column": "date", "id_column": "id", "targets": ["value"], "lookback": 28,
                 "horizon": 7, "test": 28, "validation": 0, "classical": [], "stride": stride},
        "model": {"cell": "gru", "hidden_size": 32},
        "train": {"epochs": 1, "batch_size": batch_size, "progress": False, "tensorboard": False},
    }  # fmt: skip
    task = get_task("forecast")
    config = run_config(raw_config, task)
    started = time.perf_counter()
    prepared = task.prepare(config.data, batch_size=batch_size)
    prepare_s, prepare_peak = time.perf_counter() - started, peak()
    model = build_model(resolve_model(config, prepared))
    trainer = Trainer(model, config.train, collate=prepared.collate)
    started = time.perf_counter()
    trainer.fit(prepared.train)
    epoch_s, epoch_peak = time.perf_counter() - started, peak()
    started = time.perf_counter()
    task.evaluate(model, prepared)
    evaluate_s = time.perf_counter() - started
    table = prepared.test_windows.table
    result = {
        "rows": int(table.values.shape[0]),
        "table_gib": table.values.shape[0] * len(config.data.targets) * 4 / 2**30,
        "windows": len(prepared.train),
        "steps": trainer.step,
        "prepare_s": prepare_s,
        "epoch_s": epoch_s,
        "evaluate_s": evaluate_s,
        "prepare_peak_gib": prepare_peak,
        "epoch_peak_gib": epoch_peak,
        "peak_gib": peak(),
        "runtime_gib": runtime,
    }
    if raw:
        batches = min(trainer.step, 300)
        result["raw_rows_per_s"] = raw_loop(model, prepared, config.train, batches)
        result["pipeline_rows_per_s"] = pipeline_rows(model, prepared, config.train, batches)
    return result


def _peak_gib() -> float:
    """This process's peak resident memory (VmHWM), in GiB. Not getrusage's ru_maxrss: Linux keeps that
    across exec, so a child would report its parent's size at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: the best there is


def raw_loop(model, prepared, train, batches: int) -> float:
    """Rows per second of forward, backward and Adam steps over pre-built batches (no data pipeline)."""
    import torch

    loader = torch.utils.data.DataLoader(
        prepared.train,
        batch_size=train.batch_size,
        shuffle=True,
        collate_fn=prepared.collate,
        generator=torch.Generator().manual_seed(0),
    )
    built = [b for _, b in zip(range(batches), loader, strict=False)]
    optimizer = torch.optim.Adam(model.parameters(), train.optimizer.lr)
    started = time.perf_counter()
    for batch in built:
        loss, _ = model.loss(batch.inputs, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return sum(len(b.inputs) for b in built) / (time.perf_counter() - started)


def pipeline_rows(model, prepared, train, batches: int) -> float:
    """Rows per second of rnnkit's Trainer over the same number of steps."""
    from rnnkit.train.trainer import Trainer

    settings = train.model_copy(update={"max_steps": batches, "epochs": None})
    trainer = Trainer(model, settings, collate=prepared.collate)
    started = time.perf_counter()
    trainer.fit(prepared.train)
    return batches * train.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", nargs="+", type=int, default=[100, 1000, 10000, 30000])
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--stride", type=int, default=1, help="train on every stride-th origin (shorter epochs)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="at the largest N, the raw loop beside the trainer"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch_size, args.stride, args.raw)))
        return
    import torch

    print(
        f"torch {torch.__version__}; {args.days} days a series at most; GRU 32, lookback 28, horizon 7, "
        f"batch {args.batch_size}, one epoch over every {args.stride}. origin; runtime: the peak of the "
        "process before it reads data (python, torch, pandas, rnnkit)"
    )
    print(
        f"{'series':>7} {'rows':>11} {'table GiB':>9} {'windows':>11} {'prepare s':>9} {'epoch s':>8} "
        f"{'eval s':>7} {'steps/s':>8} {'rows/s':>9} {'peak GiB':>9} {'runtime':>8} {'<= 2x+0.5':>9}"
    )
    for n in args.series:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "series.parquet"
            generate(n, args.days).to_parquet(path)
            raw = args.raw and n == max(args.series)
            command = [sys.executable, __file__, "--child", str(path), "--batch-size", str(args.batch_size)]
            command += ["--stride", str(args.stride)] + ["--raw"] * raw
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                print(f"{n:>7} failed: {(out.stderr.strip().splitlines() or ['killed'])[-1]}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            fits = "yes" if r["peak_gib"] <= 2 * r["table_gib"] + 0.5 else "NO"
            print(
                f"{n:>7} {r['rows']:>11,} {r['table_gib']:>9.3f} {r['windows']:>11,} {r['prepare_s']:>9.1f} "
                f"{r['epoch_s']:>8.1f} {r['evaluate_s']:>7.1f} {r['steps'] / r['epoch_s']:>8.1f} "
                f"{r['windows'] / r['epoch_s']:>9,.0f} {r['peak_gib']:>9.2f} {r['runtime_gib']:>8.2f} "
                f"{fits:>9}",
                flush=True,
            )
            if raw:
                ratio = r["raw_rows_per_s"] / r["pipeline_rows_per_s"]
                print(
                    f"        at {n} series: trainer {r['pipeline_rows_per_s']:,.0f} rows/s, raw loop over "
                    f"pre-built batches {r['raw_rows_per_s']:,.0f}: trainer time / raw {ratio:.2f} "
                    "(target <= 1.5)"
                )


if __name__ == "__main__":
    main()
