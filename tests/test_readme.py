"""The README's "Add your own task" example runs as written: its module registers a task that trains
through the CLI and predicts through ``rnnkit.load``."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import yaml

import rnnkit
from rnnkit.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)


def test_the_add_your_own_task_example_trains_and_predicts(tmp_path, monkeypatch, capsys):
    module_code, usage = python_blocks("Add your own task")
    assert module_code.startswith("# my_tasks.py")
    module = types.ModuleType("my_tasks")
    monkeypatch.setitem(sys.modules, "my_tasks", module)
    exec(compile(module_code, "README.md:my_tasks.py", "exec"), module.__dict__)
    monkeypatch.chdir(tmp_path)
    config = {
        "task": "digit_sum",
        "data": {"sequences": 256, "length": 6},
        "model": {"hidden_size": 16},
        "train": {"epochs": 40, "batch_size": 16, "optimizer": {"lr": 0.02}, "progress": False},
    }
    (tmp_path / "sum.yaml").write_text(yaml.safe_dump(config))
    exec(compile(usage, "README.md:usage", "exec"), {"rnnkit": rnnkit, "main": main})
    printed = capsys.readouterr().out
    assert "test MSE" in printed
    [[result]] = [eval(line) for line in printed.splitlines() if line.startswith("[{")]  # the print()
    assert result["input"] == "1,2,3,4,5,6" and result["sum"] == pytest.approx(21, abs=3)
