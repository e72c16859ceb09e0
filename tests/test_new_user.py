"""What a new user met when trying rnnkit from the shell, each fixed: kept runs, Ctrl-C, a closed
pipe, --debug after the command, a short evaluation file, the default scaler, config keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import rnnkit
from rnnkit.cli.main import main
from rnnkit.errors import ConfigError, DataError
from rnnkit.files import locked
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import forecast

ROOT = Path(__file__).resolve().parents[1]
RNNKIT = [sys.executable, "-m", "rnnkit"]


def sine_config(tmp_path: Path, out: str = "run", **train) -> Path:
    path = tmp_path / f"{out}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "forecast",
                "out_dir": str(tmp_path / out),
                "data": {"synthetic": "sine", "lookback": 8, "test": 0.2, "validation": 0.1},
                "model": {"cell": "gru", "hidden_size": 8},
                "train": {"epochs": 1, "batch_size": 16, "progress": False, "tensorboard": False, **train},
            }
        )
    )
    return path


def quiet(_: str) -> None:
    pass


# ---- run directories ------------------------------------------------------------------------------


def test_a_second_run_keeps_the_first_and_says_where_it_went(tmp_path):
    config = load_run_config(sine_config(tmp_path))
    train_run(config, log=quiet)
    first = (tmp_path / "run" / "bundle" / "model.safetensors").read_bytes()
    said: list[str] = []
    train_run(config, log=said.append)
    assert (tmp_path / "run" / "bundle" / "model.safetensors").read_bytes() == first  # kept
    assert (tmp_path / "run-2" / "bundle" / "bundle.json").is_file()
    assert said[0] == (
        f"{tmp_path / 'run'} holds an earlier run (kept; `rnnkit resume {tmp_path / 'run'}` continues it, "
        f"--overwrite replaces it): writing this one to {tmp_path / 'run-2'}"
    )
    assert yaml.safe_load((tmp_path / "run-2" / "config.yaml").read_text())["out_dir"] == str(
        tmp_path / "run-2"
    )
    train_run(config, overwrite=True, log=quiet)
    assert not (tmp_path / "run-3").exists()


def test_two_trainings_never_write_into_one_directory(tmp_path):
    config = load_run_config(sine_config(tmp_path))
    with locked(tmp_path / "run"), pytest.raises(ConfigError, match=r"another rnnkit process is training in"):
        train_run(config, log=quiet)


def test_cli_train_overwrite(tmp_path, capsys):
    path = sine_config(tmp_path)
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path), "--overwrite"]) == 0
    assert "holds an earlier run" not in capsys.readouterr().out
    assert not (tmp_path / "run-2").exists()


# ---- Ctrl-C, a closed pipe, --debug ---------------------------------------------------------------


def test_ctrl_c_says_where_the_last_checkpoint_is_and_how_to_resume(tmp_path):
    path = sine_config(tmp_path, epochs=100_000, checkpoint_every=1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*RNNKIT, "train", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"the last checkpoint is {last}: continue with `rnnkit resume {tmp_path / 'run'}`" in stderr


def test_ctrl_c_while_evaluating_keeps_the_trained_model_and_says_how_to_see_the_table(
    tmp_path, monkeypatch, capsys
):
    task = forecast.ForecastTask

    def interrupted(self, model, prepared):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "evaluate", interrupted)
    assert main(["train", str(sine_config(tmp_path))]) == 130
    bundle = tmp_path / "run" / "bundle"
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"the trained model is saved in {bundle}: `rnnkit evaluate {bundle}` prints the table" in err
    monkeypatch.undo()
    assert "last value (persistence)" in str(rnnkit.load(bundle).evaluate())


def test_output_piped_to_a_reader_that_stops_ends_quietly(tmp_path):
    config = load_run_config(sine_config(tmp_path))
    train_run(config, log=quiet)
    history = tmp_path / "history.csv"
    values = np.sin(np.linspace(0, 50, 100))
    history.write_text("value\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    command = [*RNNKIT, "forecast", str(tmp_path / "run" / "bundle"), "--input", str(history)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before anything is written (`| head` that stopped)
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == ""


def test_debug_works_after_the_command_too(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="does not exist"):
        main(["train", str(missing), "--debug"])
    assert main(["train", str(missing)]) == 2


# ---- forecasting defaults and evaluation files ------------------------------------------------------


def test_the_default_scaler_is_fitted_on_the_training_part():
    config = forecast.SeriesDataConfig(synthetic="seasonal_temperature", time_column="date", lookback=7)
    assert config.scaler == "standard"
    prepared = forecast.prepare(config)
    targets = prepared.series[0].targets[: prepared.bounds[0][0], 0]
    state = prepared.preprocessing["scalers"]["targets"]
    assert state["mean"] == pytest.approx([targets.mean()], rel=1e-5)


def test_evaluating_a_file_shorter_than_a_season_skips_that_baseline_with_a_note(tmp_path, capsys):
    path = sine_config(tmp_path)
    train_run(load_run_config(path, ["data.season=30"]), log=quiet)
    short = tmp_path / "short.csv"
    short.write_text("value\n" + "\n".join(f"{v:.4f}" for v in np.sin(np.linspace(0, 8, 25))) + "\n")
    report = rnnkit.load(tmp_path / "run" / "bundle").evaluate(short)
    assert "seasonal_naive" in report["skipped"] and "seasonal_naive" not in report["value"]["h1"]
    assert report["windows"] == 25 - 8 - 1 + 1
    assert main(["evaluate", str(tmp_path / "run" / "bundle"), "--data", str(short)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"all of {short}: 17 forecast origins, from the first with 8 steps of history")
    assert "(seasonal_naive skipped: seasonal naive needs a season (30) of history" in out


def test_forecast_fills_holes_when_asked(tmp_path):
    train_run(load_run_config(sine_config(tmp_path)), log=quiet)
    holes = tmp_path / "holes.csv"
    holes.write_text(
        "value\n" + "\n".join(["0.1", "NaN", "0.3", "0.2", "NaN", "0.0", "-0.1", "-0.2", "-0.1", "0.0"])
    )
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    with pytest.raises(DataError, match=r"set missing= \(--missing\) to one of"):
        predictor.forecast(holes)
    assert len(predictor.forecast(holes, missing="interpolate")) == 1


# ---- config keys ----------------------------------------------------------------------------------


def test_config_lists_every_key_with_its_type_default_and_description(capsys):
    assert main(["config", "forecast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["train.optimizer.lr"].split()[1:3] == ["float", "0.001"]
    assert "data.lookback" in rows and "model.hidden_size" in rows and "model.lookback" in rows
    assert "(set by the data)" in rows["model.lookback"]
    assert "fitted on the training part" in rows["data.scaler"]
    assert main(["config", "forcast"]) == 2


def test_train_help_shows_a_key_that_exists(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "train.optimizer.lr=3e-4" in text and "train.lr=" not in text and "rnnkit config TASK" in text


def test_the_seeds_sine_config_trains_and_beats_persistence(tmp_path, capsys):
    config = ROOT / "configs" / "sine.yaml"
    assert (
        main(
            ["train", str(config), f"out_dir={tmp_path / 'sine'}", "train.epochs=60", "train.progress=false"]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "sine" / "bundle" / "metrics.json").read_text())["value"]["h1"]
    assert metrics["model"]["RMSE"] < metrics["last_value"]["RMSE"]


def test_a_bundle_of_format_0_is_refused(tmp_path):
    train_run(load_run_config(sine_config(tmp_path)), log=quiet)
    info = tmp_path / "run" / "bundle" / "bundle.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "format_version": 0}))
    with pytest.raises(DataError, match=r"bundle\.json has no valid format_version \(0\); save the bundle"):
        rnnkit.load(tmp_path / "run" / "bundle")


def test_info_describes_a_bundle_with_damaged_weights_and_names_the_problem(tmp_path, capsys):
    train_run(load_run_config(sine_config(tmp_path)), log=quiet)
    weights = tmp_path / "run" / "bundle" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["info", str(tmp_path / "run" / "bundle")]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["model"] == "forecaster" and "is not a valid safetensors file" in described["problem"]
    assert main(["predict", str(tmp_path / "run" / "bundle"), str(weights)]) == 2


def test_a_directory_with_only_the_previous_checkpoint_still_holds_a_run(tmp_path):
    from rnnkit.run import holds_run

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert not holds_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last.prev.pt").write_bytes(b"x")  # a crash between two renames
    assert holds_run(tmp_path / "run")
