"""What several task tests share: a run config written to a file and loaded as `rnnkit train` would."""

import json
from pathlib import Path

from rnnkit.run import RunConfig, load_run_config

QUIET = {"progress": False, "tensorboard": False}


def write_run_config(
    tmp_path: Path, task: str, data: dict, model: dict | None = None, train: dict | None = None
) -> RunConfig:
    """``tmp_path/run.yaml`` (JSON is YAML) for ``task``, its run directory ``tmp_path/run``, loaded."""
    config = {
        "task": task,
        "out_dir": str(tmp_path / "run"),
        "data": data,
        "model": model or {},
        "train": {**QUIET, **(train or {})},
    }
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))
    return load_run_config(path)
