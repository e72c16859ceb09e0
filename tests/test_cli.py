"""The ``rnnkit`` command end to end: train, resume, info, evaluate, forecast, predict, help and user
errors.

Training, resuming, one ``predict``, a fresh process loading the bundle and a few errors run as real
processes, once, in a module fixture that starts them two at a time (each process spends about three
seconds importing torch and pandas); every other command calls ``rnnkit.cli.main.main`` in this
process, which is what ``python -m rnnkit`` runs. A user error is one line ``rnnkit: error: ...`` on
stderr and exit code 2, never a traceback; ``--debug`` shows the traceback.

The run trains a tiny GRU with a Gaussian head on a daily series read from a CSV file (a ``date``
and a ``value`` column, plus day-of-week features), so forecasts carry dates and an 80% interval.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml

from rnnkit.bundle import load_bundle
from rnnkit.classical import CLASSICAL
from rnnkit.cli.main import main
from rnnkit.data.tables import read_table
from rnnkit.errors import ConfigError
from rnnkit.metrics import BASELINES
from rnnkit.tasks import forecast, forecast_use
from rnnkit.train import checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOOKBACK, HORIZON = 10, 3
START = datetime.date(2021, 1, 1)
ROWS = 120  # the training file: the last 24 rows are the test part, the 12 before them validation
TEST_ORIGINS = 24 - HORIZON + 1
EVAL_ROWS = 60  # evaluate --data: its last 12 rows are the test part
COLUMNS = ["time", "step", "value", "value_lower", "value_upper"]
STEPS_PER_EPOCH = 5  # 120 - 24 - 12 = 84 training rows: 84 - 10 - 3 + 1 = 72 windows, 5 batches of 16
MARK = 1234.5
SUBCOMMANDS = ["train", "resume", "config", "evaluate", "forecast", "predict", "generate", "serve", "info"]


def run_config(root: Path, out_dir: Path | str) -> dict:
    return {
        "task": "forecast",
        "out_dir": str(out_dir),
        "data": {
            "path": str(root / "series.csv"),
            "time_column": "date",
            "calendar": ["day_of_week"],
            "lookback": LOOKBACK,
            "horizon": HORIZON,
            "test": 0.2,
            "validation": 0.1,
            "scaler": "standard",
        },
        "model": {"cell": "gru", "hidden_size": 8, "distribution": "gaussian"},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "optimizer": {"name": "adam", "lr": 0.01},
            "seed": 0,
            "progress": False,
            "tensorboard": False,
        },
    }


def dates(n: int) -> list[str]:
    return [str(START + datetime.timedelta(days=i)) for i in range(n)]


def sine_column(n: int, phase: float = 0.0, offset: float = 0.0) -> list[float]:
    return [round(float(np.sin(0.5 * i + phase) + offset), 6) for i in range(n)]


def write_csv(path: Path, columns: dict[str, list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def cli(capsys, *args: str) -> Result:
    """``rnnkit ARGS`` in this process: its exit code and what it printed."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse: --help
        code = exit.code
    out, err = capsys.readouterr()
    return Result(code, out, err)


def rnnkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnkit", *args]


def run_all(commands: dict[str, tuple[list[str], Path]], workers: int = 2) -> dict:
    """{name: CompletedProcess} for {name: (argv, cwd)}, a few processes at a time."""

    def one(argv, cwd):
        return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(one, *command) for name, command in commands.items()}
    return {name: future.result() for name, future in futures.items()}


class Workspace:
    """Files the commands read, and what each process did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.bundle = self.run / "bundle"
        self.config = root / "tiny.yaml"
        self.config.write_text(yaml.safe_dump(run_config(root, self.run)))
        write_csv(root / "series.csv", {"date": dates(ROWS), "value": sine_column(ROWS)})
        self.history = write_csv(  # the extra column is ignored
            root / "history.csv",
            {"date": dates(25), "other": list(range(25)), "value": sine_column(25, phase=0.3)},
        )
        self.eval_data = write_csv(  # shifted up: the bundle's scaler must be used, not a new one
            root / "eval.csv", {"date": dates(EVAL_ROWS), "value": sine_column(EVAL_ROWS, 1.0, 0.5)}
        )
        write_csv(root / "temperature.csv", {"date": dates(30), "temp": sine_column(30)})  # no target
        write_csv(root / "values.csv", {"date": dates(30), "values": sine_column(30)})  # near the target
        write_csv(root / "short.csv", {"date": dates(3), "value": [1.0, 2.0, 3.0]})  # < the lookback
        write_csv(root / "bad-cell.csv", {"date": dates(15), "value": [*sine_column(11), "x", 0.5, "", 0.25]})
        late = dates(12)  # the 7th date moved to the end
        write_csv(root / "unsorted.csv", {"date": [*late[:6], *late[7:], late[6]], "value": [0.5] * 12})
        (root / "bad.yaml").write_text("task: forecast\ndata: [1, 2\n")
        (root / "not-a-bundle").mkdir()
        (root / "not-a-bundle" / "notes.txt").write_text("hello\n")
        (root / "no-checkpoint").mkdir()  # a run directory without a checkpoint
        (root / "no-checkpoint" / "config.yaml").write_text(yaml.safe_dump(run_config(root, "no-checkpoint")))
        self.results: dict[str, subprocess.CompletedProcess] = {}


IN_A_PROCESS = ["missing-config", "unknown-model-key"]  # user errors of a real process


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("cli"))
    root, config = ws.root, str(ws.config)
    first = {
        "train": (rnnkit("train", config), root),  # first: the second batch needs its bundle
        # a run directory named like a number, given relative to the cwd: one epoch now, one on resume
        "train-7": (rnnkit("train", config, "out_dir='7'", "train.epochs=1"), root),
        **{name: (rnnkit(*ERRORS_BEFORE_TRAINING[name][0]), root) for name in IN_A_PROCESS},
        "debug-model-key": (
            rnnkit("--debug", "train", config, "model.hiden_size=3", f"out_dir={root}/failed"),
            root,
        ),
    }
    ws.results.update(run_all(_resolve(first, ws)))
    for name in ("train", "train-7"):
        result = ws.results[name]
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    seven = root / "7" / "config.yaml"  # continue the run for a second epoch
    seven.write_text(seven.read_text().replace("\n  epochs: 1\n", "\n  epochs: 2\n"))
    assert yaml.safe_load(seven.read_text())["train"]["epochs"] == 2
    # Mark the first epoch's log row in the checkpoint: a resumed run keeps it, a fresh one would not.
    last = root / "7" / "checkpoints" / "last.pt"
    state = checkpoint.load(last)
    assert state["position"]["step"] == STEPS_PER_EPOCH and len(state["history"]) == 1
    state["history"][0]["train_loss"] = MARK
    checkpoint.atomic_save(state, last)
    bundle, history = str(ws.bundle), str(ws.history)
    second = {
        "resume-7": (rnnkit("resume", "7"), root),
        "predict": (rnnkit("predict", bundle, history), root),
        "fresh-load": ([sys.executable, "-c", FRESH_LOAD, bundle, history], root),
    }
    ws.results.update(run_all(_resolve(second, ws)))
    return ws


def resolve(argument: str, ws: Workspace) -> str:
    """Fill the {root}, {config} and {bundle} placeholders of an argument."""
    for placeholder, value in {"{root}": ws.root, "{config}": ws.config, "{bundle}": ws.bundle}.items():
        argument = argument.replace(placeholder, str(value))
    return argument


def _resolve(commands: dict, ws: Workspace) -> dict:
    return {name: ([resolve(a, ws) for a in argv], cwd) for name, (argv, cwd) in commands.items()}


def ok(result: Result | subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def forecast_cli(ws: Workspace, capsys, *options: str) -> str:
    result = cli(capsys, "forecast", str(ws.bundle), "--input", str(ws.history), *options)
    assert result.stderr == ""
    return ok(result)


def expected_forecast(ws: Workspace, horizon: int | None = None):
    """The forecast table of the bundle for history.csv, computed in this process."""
    bundle = load_bundle(ws.bundle)
    data = forecast.SeriesDataConfig(**bundle.config["data"])
    return forecast_use.forecast_frame(
        bundle.model, read_table(ws.history), data, bundle.preprocessing, horizon
    )


# ---------------------------------------------------------------- the round trip


def test_train_prints_the_metrics_table_and_what_it_wrote(ws):
    stdout = ok(ws.results["train"])
    metrics = json.loads((ws.bundle / "metrics.json").read_text())
    table = forecast.metrics_table(metrics)
    assert table.startswith(f"test part: {TEST_ORIGINS} forecast origins, horizon {HORIZON}\n")
    assert f"\n{table}\n" in stdout, stdout
    for title in ("value, step 1 ahead:", f"value, step {HORIZON} ahead:", "value, all steps:"):
        assert title in table
    assert re.search(r"^\s+MAE\s+RMSE\s+MAPE\s+sMAPE\s+MASE\s+coverage\s+rank$", table, re.MULTILINE), table
    for who in ("model", "last value (persistence)", "seasonal naive (1)", "drift", "mean"):
        assert re.search(rf"^  {re.escape(who)}\s+-?\d+\.\d{{3}}", table, re.MULTILINE), who
    last = stdout.splitlines()[-1]
    assert last.startswith(f"wrote {ws.run}/: "), stdout
    written = last.split(": ", 1)[1].split(", ")
    expected = {"config.yaml", "log.csv", "loss.png", "checkpoints/", "bundle/", "forecast_step1.png"}
    assert expected | {f"forecast_step{HORIZON}.png"} <= set(written), written
    for name in written:
        assert (ws.run / name).exists(), name
    for name in ("checkpoints/last.pt", "bundle/model.safetensors", "bundle/preprocessing.json"):
        assert (ws.run / name).is_file(), name


def test_resume_a_run_directory_named_like_a_number(ws):
    """`rnnkit resume 7`: the directory name is a path, not the YAML number 7. The run continues
    from its one-epoch checkpoint (whose marked log row it keeps) to the very weights of the
    two-epoch run of the same config."""
    stdout = ok(ws.results["resume-7"])
    seven = ws.root / "7"
    assert f"test part: {TEST_ORIGINS} forecast origins" in stdout
    assert stdout.splitlines()[-1].startswith("wrote 7/: "), stdout
    assert yaml.safe_load((seven / "config.yaml").read_text())["out_dir"] == "7"
    got = safetensors.torch.load_file(seven / "bundle" / "model.safetensors")
    expected = safetensors.torch.load_file(ws.bundle / "model.safetensors")
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    with open(seven / "log.csv", newline="") as f, open(ws.run / "log.csv", newline="") as g:
        resumed, whole = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == ["5", "10"]
    assert float(resumed[0]["train_loss"]) == MARK  # epoch 1 was not trained again
    assert resumed[0] == {**whole[0], "train_loss": resumed[0]["train_loss"]}
    assert resumed[1] == whole[1]


def test_info_describes_the_bundle(ws, capsys):
    info = json.loads(ok(cli(capsys, "info", str(ws.bundle))))
    assert info["format_version"] == 1
    assert info["model"] == "forecaster"
    model = info["model_config"]
    assert (model["lookback"], model["horizon"], model["hidden_size"]) == (LOOKBACK, HORIZON, 8)
    assert (model["distribution"], model["num_known"], model["output_size"]) == ("gaussian", 2, 1)
    assert info["metrics"] == json.loads((ws.bundle / "metrics.json").read_text())
    assert info["metrics"]["windows"] == TEST_ORIGINS and info["metrics"]["horizon"] == HORIZON
    assert set(info["metrics"]["value"]) == {"h1", f"h{HORIZON}", "all"}
    for step in info["metrics"]["value"].values():
        assert set(step) == {"model", "recurrent", *BASELINES, *CLASSICAL}  # model: averaged with ARIMA
        assert {"MAE", "RMSE", "MAPE", "sMAPE", "MASE", "coverage"} == set(step["model"])
        assert 0 <= step["model"]["coverage"] <= 100
        assert "coverage" not in step["last_value"]
    assert info["metrics"]["steps"] == 2 * STEPS_PER_EPOCH
    assert info["parameters"] == sum(p.numel() for p in load_bundle(ws.bundle).model.parameters())
    assert "model.safetensors" in info["files"]


def test_evaluate_prints_the_training_test_metrics(ws, capsys):
    metrics = json.loads((ws.bundle / "metrics.json").read_text())
    assert ok(cli(capsys, "evaluate", str(ws.bundle))) == forecast.metrics_table(metrics) + "\n"


def test_evaluate_on_a_file(ws, capsys):
    stdout = ok(cli(capsys, "evaluate", str(ws.bundle), "--data", str(ws.eval_data)))
    origins = EVAL_ROWS - LOOKBACK - HORIZON + 1  # all of the file, from the first full lookback
    assert stdout.startswith(
        f"all of {ws.eval_data}: {origins} forecast origins, from the first with {LOOKBACK} steps of "
        f"history, horizon {HORIZON}\n"
    ), stdout
    bundle = load_bundle(ws.bundle)
    data = forecast.SeriesDataConfig(**bundle.config["data"])
    prepared = forecast.prepare(data, bundle.preprocessing, ws.eval_data)
    assert stdout == forecast.metrics_table(forecast.evaluate(bundle.model, prepared)) + "\n"
    refitted = forecast.prepare(data, None, read_table(ws.eval_data))  # new scalers: other numbers
    assert stdout != forecast.metrics_table(forecast.evaluate(bundle.model, refitted)) + "\n"


def test_forecast_writes_dates_steps_and_the_interval(ws, capsys):
    stdout = forecast_cli(ws, capsys)
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert list(rows[0]) == COLUMNS
    assert [r["time"] for r in rows] == [str(START + datetime.timedelta(days=25 + h)) for h in range(HORIZON)]
    assert [int(r["step"]) for r in rows] == list(range(1, HORIZON + 1))
    for r in rows:
        lower, value, upper = (float(r[k]) for k in ("value_lower", "value", "value_upper"))
        assert lower < value < upper, r
    assert stdout == expected_forecast(ws).to_csv(index=False)


def test_predict_prints_what_forecast_prints_without_options(ws, capsys):
    assert ok(ws.results["predict"]) == forecast_cli(ws, capsys)
    assert ws.results["predict"].stderr == ""


def test_forecast_horizon_shortens_the_table(ws, capsys):
    stdout = forecast_cli(ws, capsys, "--horizon", "2")
    assert stdout.splitlines() == forecast_cli(ws, capsys).splitlines()[:3]  # header, steps 1 and 2
    assert stdout == expected_forecast(ws, 2).to_csv(index=False)


def test_forecast_output_and_plot_files(ws, capsys, tmp_path):
    output, plot = tmp_path / "out.csv", tmp_path / "out.png"
    stdout = forecast_cli(ws, capsys, "--output", str(output), "--plot", str(plot))
    assert stdout == f"wrote {HORIZON} forecasts to {output}\nwrote {plot}\n"
    assert output.read_text() == forecast_cli(ws, capsys)
    png = plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 200 and height >= 100, (width, height)


FRESH_LOAD = """
import json, sys
import rnnkit
from rnnkit.tasks import forecast

predictor = rnnkit.load(sys.argv[1])
table = predictor.forecast(sys.argv[2])
bundle = predictor.bundle
test = forecast.prepare(predictor.data_config, bundle.preprocessing).test
print(json.dumps({
    "forecast": table.astype({"time": str}).to_dict(orient="list"),
    "test": bundle.model.predict(test.tensors[0]).flatten().tolist(),
}))
"""


def test_bundle_forecasts_the_same_in_a_fresh_process(ws):
    fresh = json.loads(ok(ws.results["fresh-load"]))
    bundle = load_bundle(ws.bundle)
    assert fresh["forecast"] == expected_forecast(ws).astype({"time": str}).to_dict(orient="list")
    assert list(fresh["forecast"]) == COLUMNS and len(fresh["forecast"]["step"]) == HORIZON
    test = forecast.prepare(forecast.SeriesDataConfig(**bundle.config["data"]), bundle.preprocessing).test
    assert len(test) == TEST_ORIGINS
    assert torch.equal(torch.tensor(fresh["test"]), bundle.model.predict(test.tensors[0]).flatten())


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_exits_0(capsys, command):
    result = cli(capsys, *filter(None, [command, "--help"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: rnnkit {command}".rstrip())
    assert result.stderr == ""


def test_top_level_help_lists_every_subcommand(capsys):
    stdout = cli(capsys, "--help").stdout
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", stdout, re.MULTILINE), command


def test_forecast_help_names_its_options(capsys):
    stdout = cli(capsys, "forecast", "--help").stdout
    for option in ("--input", "--horizon", "--output", "--plot"):
        assert option in stdout, option


# ---------------------------------------------------------------- user errors

FAILED = "out_dir={root}/failed"  # a run that fails must not write anything, here or elsewhere

# name: (arguments, the message after "rnnkit: error: ", as a regex)
ERRORS_BEFORE_TRAINING = {
    "missing-config": (["train", "{root}/missing.yaml"], r"config file '.*missing\.yaml' does not exist"),
    "unknown-key": (
        ["train", "{config}", "train.lrr=0.1", FAILED],
        r"override 'train\.lrr=0\.1': unknown key 'train\.lrr'; .*'optimizer'.*",
    ),
    "unknown-nested-key": (
        ["train", "{config}", "train.optimizer.lrr=0.1", FAILED],
        r"override 'train\.optimizer\.lrr=0\.1': unknown key 'train\.optimizer\.lrr'; "
        r"did you mean 'train\.optimizer\.lr'\?",
    ),
    "old-split-key": (
        ["train", "{config}", "data.validation_fraction=0.1", FAILED],
        r"override 'data\.validation_fraction=0\.1': unknown key 'data\.validation_fraction'; "
        r"did you mean 'data\.validation'\?",
    ),
    "bad-override-syntax": (
        ["train", "{config}", FAILED, "train.lr"],
        r"override 'train\.lr' must look like key=value with a dotted key, e\.g\. train\.lr=3e-4",
    ),
    "wrong-type": (
        ["train", "{config}", "train.epochs=abc", FAILED],
        r"override 'train\.epochs=abc': train\.epochs: Input should be a valid integer.*\(got 'abc'\)",
    ),
    "two-data-sources": (
        ["train", "{config}", "data.synthetic=sine", FAILED],
        r".*tiny\.yaml with override\(s\) 'data\.synthetic=sine': "
        r"data: set only one of data\.path, data\.dataset and data\.synthetic",
    ),
    "no-data-source": (
        ["train", "{config}", "data.path=null", FAILED],
        r"no data: set data\.path, data\.dataset or data\.synthetic.*",
    ),
    "unknown-model-key": (
        ["train", "{config}", "model.hiden_size=3", FAILED],
        r"override 'model\.hiden_size=3': unknown key 'model\.hiden_size'; "
        r"did you mean 'model\.hidden_size'\?",
    ),
    "model-key-fixed-by-the-data": (
        ["train", "{config}", "model.horizon=5", FAILED],
        rf"override 'model\.horizon=5': model\.horizon is fixed by the data section to {HORIZON}, got 5: "
        r"drop model\.horizon",
    ),
    "missing-data-file": (
        ["train", "{config}", "data.path={root}/missing.csv", FAILED],
        r"data file '.*missing\.csv' does not exist",
    ),
    "csv-without-target": (
        ["train", "{config}", "data.path={root}/temperature.csv", FAILED],
        r".*has no column 'value'; its columns are \['date', 'temp'\]",
    ),
    "csv-with-a-near-column": (
        ["train", "{config}", "data.path={root}/values.csv", FAILED],
        r".*has no column 'value' \(did you mean 'values'\?\); its columns are \['date', 'values'\]",
    ),
    "too-few-rows-to-split": (
        ["train", "{config}", "data.test=100", "data.validation=20", FAILED],
        rf"a series of {ROWS} rows cannot be split into train/validation/test parts of 0/20/100 rows",
    ),
    "unknown-synthetic-option": (
        [
            "train",
            "{config}",
            "data.path=null",
            "data.synthetic=sine",
            "data.synthetic_options.bogus=1",
            FAILED,
        ],
        r"data\.synthetic_options: unknown option\(s\) \['bogus'\] for 'sine'; "
        r"valid options are \['noise', 'points', 'seed'\]",
    ),
    "not-a-bundle": (
        ["info", "{root}/not-a-bundle"],
        r".*not-a-bundle is not an rnnkit bundle \(no bundle\.json\).*",
    ),
    "resume-without-checkpoint": (
        ["resume", "{root}/no-checkpoint"],
        r"no checkpoint to resume from at .*no-checkpoint/checkpoints/last\.pt.*",
    ),
    "invalid-yaml": (
        ["train", "{root}/bad.yaml"],
        r".*bad\.yaml is not valid YAML at line 3, column 1: expected ',' or '\]', but got '<stream end>'",
    ),
}
ERRORS_WITH_BUNDLE = {
    "predict-without-target": (
        ["predict", "{bundle}", "{root}/temperature.csv"],
        r".*has no column 'value'; its columns are \['date', 'temp'\]",
    ),
    "predict-short-history": (
        ["predict", "{bundle}", "{root}/short.csv"],
        rf"series 'series' has 3 rows; the model reads the last {LOOKBACK}",
    ),
    "predict-bad-cell": (  # data rows 1-11 are numbers, 12 is x, 14 is empty
        ["predict", "{bundle}", "{root}/bad-cell.csv"],
        r"missing or non-numeric values in \['value'\] on rows \[12, 14\] \(2 rows\); "
        r"set missing= \(--missing\) to one of \['ffill', 'interpolate', 'zero'\] or clean the data",
    ),
    "forecast-unsorted-dates": (
        ["forecast", "{bundle}", "--input", "{root}/unsorted.csv"],
        r"timestamps are not in time order: .*; sort the table by time",
    ),
    "forecast-beyond-the-horizon": (
        [
            "forecast",
            "{bundle}",
            "--input",
            "{root}/history.csv",
            "--horizon",
            "5",
            "--output",
            "{root}/failed",
        ],
        rf"this model forecasts up to {HORIZON} steps ahead; asked for 5: retrain with data\.horizon=5",
    ),
    "forecast-missing-input": (
        ["forecast", "{bundle}", "--input", "{root}/missing.csv"],
        r"data file '.*missing\.csv' does not exist",
    ),
    "evaluate-missing-data": (
        ["evaluate", "{bundle}", "--data", "{root}/missing.csv"],
        r"data file '.*missing\.csv' does not exist",
    ),
    "evaluate-data-without-target": (
        ["evaluate", "{bundle}", "--data", "{root}/temperature.csv"],
        r".*has no column 'value'; its columns are \['date', 'temp'\]",
    ),
}


def check_user_error(ws: Workspace, result: Result | subprocess.CompletedProcess, message: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(rf"rnnkit: error: {message}\n", result.stderr), result.stderr
    assert result.stdout == ""
    assert not (ws.root / "failed").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [pytest.param(*case, id=name) for name, case in {**ERRORS_BEFORE_TRAINING, **ERRORS_WITH_BUNDLE}.items()],
)
def test_user_error_is_one_line_and_exit_2(ws, capsys, monkeypatch, args, message):
    monkeypatch.chdir(ws.root)
    check_user_error(ws, cli(capsys, *(resolve(a, ws) for a in args)), message)


@pytest.mark.parametrize("name", IN_A_PROCESS)
def test_user_error_of_a_process_is_one_line_and_exit_2(ws, name):
    check_user_error(ws, ws.results[name], ERRORS_BEFORE_TRAINING[name][1])


def test_debug_shows_the_traceback(ws, capsys):
    result = ws.results["debug-model-key"]
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert (
        "rnnkit.errors.ConfigError: override 'model.hiden_size=3': unknown key 'model.hiden_size'"
        in result.stderr
    )
    assert "rnnkit: error:" not in result.stderr
    with pytest.raises(ConfigError, match=r"config file '.*missing\.yaml' does not exist"):
        main(["--debug", "train", str(ws.root / "missing.yaml")])
    assert capsys.readouterr().err == ""
