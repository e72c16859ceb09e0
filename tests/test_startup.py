"""Inference stays light: loading a bundle and predicting imports no metrics, plotting or compiler code.

torchmetrics (which pulls scipy.signal and matplotlib) and scikit-learn cost about 3 s of start-up
on a 2-core machine, over twice ``import torch``; ``rnnkit forecast`` and ``rnnkit predict`` need
none of them, nor ``torch._dynamo`` (which the first optimiser imports). Each check runs the CLI in
a fresh process on a tiny bundle trained here and lists the heavy modules in ``sys.modules``; the
times themselves are measured by benchmarks/startup.py, not by tests.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys

import pytest

from rnnkit.run import load_run_config, train_run

HEAVY = ["torchmetrics", "sklearn", "scipy", "matplotlib", "torch._dynamo"]
MOVE = "import it inside the function that uses it, as rnnkit/metrics.py does torchmetrics"
TRAIN = {"epochs": 1, "batch_size": 16, "progress": False, "tensorboard": False, "seed": 0}
CHILD = """
import json, sys
HEAVY = {heavy!r}
loaded = lambda: [h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in sys.modules)]
import rnnkit
found = {{"import rnnkit": loaded()}}
from rnnkit.cli.main import main
for argv in {commands!r}:
    assert main(argv) == 0, argv
    found[" ".join(argv[:1] + argv[2:])] = loaded()
print(json.dumps(found))
"""


def _train(root, name: str, config: dict) -> str:
    path = root / f"{name}.yaml"
    path.write_text(json.dumps({**config, "out_dir": str(root / name), "train": TRAIN}))  # JSON is YAML
    train_run(load_run_config(path), log=lambda _: None)
    return str(root / name / "bundle")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    start = datetime.date(2021, 1, 1)
    rows = [f"{start + datetime.timedelta(days=i)},{math.sin(i / 5):.4f}" for i in range(120)]
    (root / "series.csv").write_text("date,value\n" + "\n".join(rows) + "\n")
    reviews = [f"{'a good' if i % 2 else 'a bad'} film {i},{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (root / "reviews.csv").write_text("text,label\n" + "\n".join(reviews) + "\n")

    def forecaster(combine: bool) -> str:
        arima = ["arima"] if combine else []
        return _train(root, f"forecast-{combine}", {
            "task": "forecast",
            "data": {"path": str(root / "series.csv"), "time_column": "date", "calendar": ["day_of_week"],
                     "lookback": 10, "horizon": 3, "test": 0.2, "validation": 0.1,
                     "classical": arima, "combine": arima},
            "model": {"cell": "lstm", "hidden_size": 8, "distribution": "gaussian"},
        })  # fmt: skip

    forecasters = {combine: forecaster(combine) for combine in (False, True)}
    classifier = _train(root, "classify", {
        "task": "classify",
        "data": {"path": str(root / "reviews.csv"), "test": 0.25, "validation": 0.25},
        "model": {"cell": "lstm", "embedding_dim": 8, "hidden_size": 8},
    })  # fmt: skip
    return root, forecasters, classifier


def _heavy_modules(commands: list[list[str]], heavy: list[str]) -> dict[str, list[str]]:
    """The ``heavy`` modules loaded after ``import rnnkit`` and after each CLI command, in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = CHILD.format(heavy=heavy, commands=commands)
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("combined", [False, True], ids=["alone", "averaged-with-arima"])
def test_forecast_and_predict_import_no_metrics_plots_or_dynamo(bundles, combined):
    """A forecaster averaged with ARIMA (data.combine) needs statsmodels, which imports scipy; nothing
    else heavy. Alone, it needs none of them."""
    root, forecasters, _ = bundles
    series, forecaster = str(root / "series.csv"), forecasters[combined]
    commands = [["forecast", forecaster, "--input", series], ["predict", forecaster, series]]
    found = _heavy_modules(commands, HEAVY)
    need = ["scipy"] if combined else []
    assert found == {"import rnnkit": [], "forecast --input " + series: need, "predict " + series: need}, MOVE


def test_classifier_predict_imports_no_pandas_either(bundles):
    _, _, classifier = bundles
    found = _heavy_modules([["predict", classifier, "--text", "a good film"]], [*HEAVY, "pandas"])
    assert found == {"import rnnkit": [], "predict --text a good film": []}, MOVE
