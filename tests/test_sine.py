"""The seeds' sine example end to end, on a small budget with a fixed seed."""

import json

import pytest

from rnnkit.cli import sine
from rnnkit.cli.main import main


def test_sine_beats_last_value_and_writes_outputs(tmp_path):
    metrics = sine.run(tmp_path, epochs=60, seed=0, log=None)
    assert metrics["train_windows"] == 72 and metrics["test_windows"] == 18
    assert metrics["model_mse"] < 0.5 * metrics["last_value_mse"]
    for name in ("predictions.png", "loss.png", "model.pt"):
        assert (tmp_path / name).stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_sine_repeats_exactly_with_a_seed(tmp_path):
    first = sine.run(tmp_path / "a", epochs=5, seed=3, log=None)
    second = sine.run(tmp_path / "b", epochs=5, seed=3, log=None)
    assert first == second


def test_cli_sine_prints_model_and_baseline(tmp_path, capsys):
    assert main(["sine", "--out", str(tmp_path), "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Elman RNN(50, relu)" in printed and "last value (naive)" in printed


def test_cli_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
