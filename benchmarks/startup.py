"""Start-up of the inference commands: each a fresh process, timed beside ``python -c "import torch"``.

It first trains two tiny bundles in a temporary folder (one epoch each): a forecaster (LSTM, Gaussian
head, daily series with a date column and day-of-year features, like configs/seattle_weather.yaml,
but alone: ``data.combine: []``; averaged with ARIMA, as the main job's is, a forecast also imports
statsmodels and scipy, about 0.9 s more on 2 cores, measured beside ``import torch, pandas``)
and a text classifier (word-level LSTM on a generated CSV of reviews). Then it runs, in interleaved
rounds (one run of each per round, after one warm-up round), each of:

    python -c "import torch"                      the floor: every command needs torch
    python -c "import rnnkit"                     target <= 1.1x import torch
    python -c "import torch, pydantic.main"       floor of loading a bundle (its config is pydantic)
    python -c "import torch, pydantic.main, pandas"  floor of forecasting (tables are pandas')
    rnnkit forecast BUNDLE --input CSV            target <= 1.3x
    rnnkit predict BUNDLE CSV                     (forecaster) target <= 1.3x
    rnnkit predict CLASSIFIER --text T            target <= 1.3x

and prints the median wall time of each, the spread (fastest and slowest run), the ratio of the
medians to ``import torch``, and whether each target is met. A last run of each command under
``python -X importtime`` lists the heavy packages it imported (and their cumulative import time),
which is where to look when a target is missed. The timed processes cache their bytecode in a
temporary folder (PYTHONPYCACHEPREFIX), as an installed package has its .pyc files, even where
PYTHONDONTWRITEBYTECODE is set; otherwise every run would compile rnnkit's modules from source.

    python benchmarks/startup.py [--repeats 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import setting

# Packages an inference command should not need; pandas is listed to show its cost, forecasts need it.
HEAVY = ("torchmetrics", "sklearn", "scipy", "matplotlib", "torch._dynamo", "pandas")
TARGETS = {"import rnnkit": 1.1, "rnnkit forecast": 1.3, "rnnkit predict (forecast)": 1.3,
           "rnnkit predict (classify)": 1.3}  # fmt: skip
WORDS = {"pos": ["good", "great", "lovely", "superb"], "neg": ["bad", "awful", "dull", "boring"]}
FILLER = ["the", "a", "movie", "film", "plot", "actors", "was", "is", "and", "it"]


def write_series(path: Path, days: int = 400) -> None:
    """A daily temperature-like series: a yearly cycle, a weekly wiggle and noise."""
    rng = random.Random(0)
    start = datetime.date(2020, 1, 1)
    rows = ["date,temp_max"]
    for i in range(days):
        value = 15 + 10 * math.sin(2 * math.pi * i / 365.25) + math.sin(2 * math.pi * i / 7) + rng.gauss(0, 2)
        rows.append(f"{start + datetime.timedelta(days=i)},{value:.3f}")
    path.write_text("\n".join(rows) + "\n")


def write_reviews(path: Path, rows: int = 200) -> None:
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(rows):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.choices(FILLER, k=rng.randint(2, 8)) + rng.choices(WORDS[label], k=2)
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")


def train_bundles(root: Path) -> dict[str, Path]:
    """Train the forecaster and the classifier for one epoch each; returns their bundle folders."""
    from rnnkit.run import load_run_config, train_run

    write_series(root / "series.csv")
    write_reviews(root / "reviews.csv")
    train = {"epochs": 1, "batch_size": 32, "progress": False, "tensorboard": False, "seed": 0}
    configs = {
        "forecast": {
            "task": "forecast",
            "data": {"path": str(root / "series.csv"), "time_column": "date", "targets": ["temp_max"],
                     "calendar": ["day_of_year"], "lookback": 14, "horizon": 7, "test": 0.2,
                     "validation": 0.1, "scaler": "standard", "season": 7, "combine": []},
            "model": {"cell": "lstm", "hidden_size": 16, "residual": True, "distribution": "gaussian"},
        },
        "classify": {
            "task": "classify",
            "data": {"path": str(root / "reviews.csv"), "test": 0.25, "validation": 0.1},
            "model": {"cell": "lstm", "embedding_dim": 16, "hidden_size": 16},
        },
    }  # fmt: skip
    bundles = {}
    for name, config in configs.items():
        path = root / f"{name}.yaml"
        path.write_text(json.dumps({**config, "out_dir": str(root / name), "train": train}))  # JSON is YAML
        train_run(load_run_config(path), overwrite=True, log=lambda _: None)
        bundles[name] = root / name / "bundle"
    return bundles


def commands(root: Path, bundles: dict[str, Path]) -> dict[str, list[str]]:
    python = sys.executable
    script = Path(python).parent / "rnnkit"
    rnnkit = [str(script)] if script.is_file() else [python, "-m", "rnnkit"]
    series = str(root / "series.csv")
    return {
        "import torch": [python, "-c", "import torch"],
        "import rnnkit": [python, "-c", "import rnnkit"],
        "import torch, pydantic": [python, "-c", "import torch, pydantic.main"],
        "import torch, pyd., pandas": [python, "-c", "import torch, pydantic.main, pandas"],
        "rnnkit forecast": [*rnnkit, "forecast", str(bundles["forecast"]), "--input", series],
        "rnnkit predict (forecast)": [*rnnkit, "predict", str(bundles["forecast"]), series],
        "rnnkit predict (classify)": [*rnnkit, "predict", str(bundles["classify"]), "--text", "a great film"],
    }


def child_environment(root: Path) -> dict[str, str]:
    """The environment of the timed processes: bytecode cached (under ``root``, not in the source tree),
    as an installed package has its .pyc files, even where PYTHONDONTWRITEBYTECODE is set."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(root / "pycache")}


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def heavy_imports(command: list[str], env: dict[str, str]) -> str:
    """The heavy packages ``command`` imports, each with its cumulative import time (``-X importtime``)."""
    script = command[1:] if command[0] == sys.executable else command  # a console script is a Python file
    argv = [sys.executable, "-X", "importtime", *script]
    lines = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    rows = [m.groups() for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", lines, re.M)]
    totals: dict[str, float] = {}
    ancestors: list[tuple[int, str]] = []  # importtime prints a module after its imports: walk it backwards
    for micros, indent, name in reversed(rows):
        while ancestors and ancestors[-1][0] >= len(indent):
            ancestors.pop()
        package = next((p for p in HEAVY if name == p or name.startswith(p + ".")), None)
        if package and not any(a == package or a.startswith(package + ".") for _, a in ancestors):
            totals[package] = totals.get(package, 0.0) + int(micros) / 1e6
        ancestors.append((len(indent), name))
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in totals.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--keep", type=Path, default=None, help="make the bundles here and keep them")
    args = parser.parse_args()
    print(setting())
    print(f"python {sys.version.split()[0]}, {sys.executable}; .pyc files cached in a temporary folder")
    root = Path(tempfile.mkdtemp(prefix="rnnkit-startup-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        bundles = train_bundles(root)
        candidates, env = commands(root, bundles), child_environment(root)
        for command in candidates.values():  # warm-up: file caches, .pyc files
            run(command, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
        for _ in range(args.repeats):
            for name, command in candidates.items():
                times[name].append(run(command, env))
        report(times, {name: heavy_imports(command, env) for name, command in candidates.items()})
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def report(times: dict[str, list[tuple[float, float]]], imports: dict[str, str]) -> None:
    wall = {name: [w for w, _ in runs] for name, runs in times.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in times.items()}
    floor, cpu_floor = statistics.median(wall["import torch"]), cpu["import torch"]
    runs = len(wall["import torch"])
    print(f"\n{runs} runs each, interleaved; seconds per fresh process; ratio: median over import torch's")
    print("(CPU: user + system seconds, steadier than wall time on a busy machine)\n")
    header = ("command", "median", "fastest", "slowest", "ratio", "CPU", "ratio")
    print("{:<26} {:>6} {:>7} {:>7} {:>5} {:>5} {:>5}  target".format(*header))
    for name, seconds in wall.items():
        ratio = statistics.median(seconds) / floor
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target}: {'met' if ratio <= target else 'MISSED'}"
        print(f"{name:<26} {statistics.median(seconds):6.2f} {min(seconds):7.2f} {max(seconds):7.2f} "
              f"{ratio:5.2f} {cpu[name]:5.2f} {cpu[name] / cpu_floor:5.2f}  {verdict}")  # fmt: skip
    print("\nheavy packages imported (cumulative import time of one run under -X importtime; torchmetrics")
    print("includes the scipy and matplotlib it imports):")
    for name, heavy in imports.items():
        print(f"  {name:<26} {heavy}")


if __name__ == "__main__":
    main()
