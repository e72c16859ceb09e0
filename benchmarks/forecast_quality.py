"""Forecast quality on classic series: rnnkit's forecaster beside ARIMA, ETS, Theta and seasonal naive.

Six series, each with a fixed protocol: the last 20% is the test part (the 10% before it validation,
for early stopping), one forecast from every test step (a backtest without refitting), ``H`` steps:

    series            points  season  H   source
    airline              144      12  12  sktime's Airline.csv (monthly passengers 1949-1960)
    lynx                 114      10   5  sktime's Lynx.csv (yearly trappings 1821-1934)
    shampoo               36      12   3  sktime's ShampooSales.csv (monthly sales, 3 years)
    co2                 2284      52  13  statsmodels' weekly Mauna Loa CO2 (gaps interpolated)
    nile                 100       1   5  statsmodels' yearly Nile flow
    seattle temp_max    1461     365   7  vega_datasets' daily maximum temperature

rnnkit runs the task's own pipeline (``train_run`` on a config per series: standard scaling on the
training part, a 1-layer LSTM of 32, lookback 2 seasons capped to 24 rows, direct strategy) in the
variants given by ``--variants``: ``plain``, ``revin`` (model.revin), ``highway``
(model.highway_window = lookback), ``revin+highway``, ``revin ensemble`` (five RevIN forecasters,
their median: model.name forecast_ensemble), ``revin log`` / ``revin log ensemble`` (data.transform
log where the series is positive), and ``revin+arima`` / ``revin ensemble+arima`` (data.combine
[arima]: the forecast averaged with ARIMA's; the same run also gives its recurrent model alone, the
row without ``+arima``). Every other variant sets data.combine []. The classical rows come from the
same evaluation (rnnkit.classical: ARIMA and ETS by AIC, Theta; fitted on the training part, updated without
refitting). The table is MASE over all H steps (scaled by the in-sample seasonal naive MAE of the
training part); the summary gives the mean MASE over the series, the number of series where each
beats ARIMA, and the wall time of a whole run (training and evaluation) per variant.

The sktime wheel is read as a zip, never imported or installed: ``make bench`` downloads it into
rnnkit's cache (``pip download --no-deps sktime==1.2.0``) before this script runs.

    python benchmarks/forecast_quality.py [--variants plain revin ...] [--seeds 1]
                                          [--epochs 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from timing import setting

from rnnkit.files import cache_dir
from rnnkit.run import load_run_config, train_run

SKTIME = "sktime-1.2.0-py3-none-any.whl"
SERIES = {  # name: (season, horizon)
    "airline": (12, 12),
    "lynx": (10, 5),
    "shampoo": (12, 3),
    "co2": (52, 13),
    "nile": (1, 5),
    "seattle": (365, 7),
}
VARIANTS = {
    "plain": {},
    "revin": {"revin": True},
    "highway": {"highway": True},
    "revin+highway": {"revin": True, "highway": True},
    "revin ensemble": {"revin": True, "members": 5},
    "revin log": {"revin": True, "log": True},
    "revin log ensemble": {"revin": True, "log": True, "members": 5},
    "revin+arima": {"revin": True, "arima": True},
    "revin ensemble+arima": {"revin": True, "members": 5, "arima": True},
}
CLASSICAL_ROWS = {"arima": "ARIMA", "ets": "ETS", "theta": "Theta", "seasonal_naive": "seasonal naive"}


def load(name: str) -> np.ndarray:
    """The series' values (N,), float64."""
    if name in ("airline", "lynx", "shampoo"):
        wheel = cache_dir("downloads") / SKTIME
        if not wheel.exists():
            raise SystemExit(
                f"{wheel} is missing: `make bench` downloads it, or "
                f"pip download --no-deps sktime==1.2.0 -d {wheel.parent}"
            )
        member = {
            "airline": "Airline/Airline.csv",
            "lynx": "Lynx/Lynx.csv",
            "shampoo": "ShampooSales/ShampooSales.csv",
        }
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read(f"sktime/datasets/data/{member[name]}").decode()
        return pd.read_csv(io.StringIO(text)).iloc[:, 1].to_numpy(np.float64)
    if name in ("co2", "nile"):
        import statsmodels.api as sm

        if name == "nile":
            return sm.datasets.nile.load_pandas().data["volume"].to_numpy(np.float64)
        return sm.datasets.co2.load_pandas().data["co2"].interpolate().bfill().to_numpy(np.float64)
    from vega_datasets import data

    return data.seattle_weather()["temp_max"].to_numpy(np.float64)


def run_config(path: Path, out: Path, season: int, horizon: int, options: dict, seed: int, epochs: int):
    n = len(pd.read_csv(path))
    lookback = min(24, max(2 * season, 2 * horizon, 8), n // 4)
    model = {"cell": "lstm", "hidden_size": 32}
    model["revin"] = bool(options.get("revin"))  # the task turns it on unless told
    if options.get("highway"):
        model["highway_window"] = lookback
    if options.get("members"):
        model.update(name="forecast_ensemble", members=options["members"])
    config = {
        "task": "forecast",
        "out_dir": str(out),
        "data": {
            "path": str(path), "targets": ["value"], "lookback": lookback, "horizon": horizon,
            "test": 0.2, "validation": 0.1, "season": season,
            "transform": "log" if options.get("log") and (pd.read_csv(path)["value"] > 0).all() else "none",
            "combine": ["arima"] if options.get("arima") else [],
        },
        "model": model,
        "train": {
            "epochs": epochs, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.003},
            "clip_grad_norm": 1.0, "early_stopping": {"patience": 20}, "seed": seed,
            "progress": False, "tensorboard": False,
        },
    }  # fmt: skip
    file = out.parent / f"{out.name}.yaml"
    file.write_text(yaml.safe_dump(config))
    return load_run_config(file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument(
        "--seeds", type=int, default=1, help="seeds per variant; the table shows their median"
    )
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(setting())
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    alone: dict[str, list[float]] = {}  # the recurrent model alone in combined variants, this series
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.series:
            season, horizon = SERIES[name]
            path = Path(tmp) / f"{name}.csv"
            pd.DataFrame({"value": load(name)}).to_csv(path, index=False)
            for variant in args.variants:
                scores = []
                for seed in range(args.seeds):
                    out = Path(tmp) / f"{name}-{variant}-{seed}"
                    config = run_config(path, out, season, horizon, VARIANTS[variant], seed, args.epochs)
                    start = time.perf_counter()
                    metrics = train_run(config, log=lambda _: None)
                    seconds[variant].append(time.perf_counter() - start)
                    step = metrics["value"]["all" if horizon > 1 else "h1"]
                    scores.append(step["model"]["MASE"])
                    if "recurrent" in step:  # a combined variant's recurrent model alone: the same run
                        alone.setdefault(variant.removesuffix("+arima"), []).append(step["recurrent"]["MASE"])
                    for key, label in CLASSICAL_ROWS.items():
                        if key in step:
                            rows.setdefault(label, {})[name] = step[key]["MASE"]
                rows.setdefault(f"rnnkit {variant}", {})[name] = statistics.median(scores)
            for variant, scores in alone.items():
                if variant not in args.variants:
                    rows.setdefault(f"rnnkit {variant}", {})[name] = statistics.median(scores)
            alone.clear()
            print(f"  {name}: done", flush=True)
    print_table(rows, args.series)
    print("\nwall time of one run (train + evaluate, the classical fits included), median over series:")
    for variant, times in seconds.items():
        print(f"  rnnkit {variant:<22} {statistics.median(times):6.1f} s")


def print_table(rows: dict[str, dict[str, float]], series: list[str]) -> None:
    print("\nMASE over all forecast steps (lower is better); last columns: mean over the series, series")
    print("where the row beats ARIMA")
    header = "".join(f"{s:>10}" for s in series)
    print(f"  {'':<28}{header}{'mean':>10}{'< ARIMA':>10}")
    arima = rows.get("ARIMA", {})
    for label, scores in rows.items():
        cells = "".join(f"{scores[s]:>10.3f}" if s in scores else f"{'-':>10}" for s in series)
        mean = np.mean([scores[s] for s in series if s in scores])
        wins = sum(scores[s] < arima[s] for s in series if s in scores and s in arima)
        print(f"  {label:<28}{cells}{mean:>10.3f}{wins:>10}")


if __name__ == "__main__":
    main()
