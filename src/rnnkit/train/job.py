"""A whole run from one config: data, model, training, evaluation and the bundle.

    config = load_run_config("configs/sine.yaml", ["train.epochs=5"])
    metrics = train_run(config)

Under torchrun every process runs this; only rank 0 writes files and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rnnkit.bundle import save_bundle
from rnnkit.config import Config, dump_yaml, load_config
from rnnkit.models import build_model, model_config
from rnnkit.runtime import seed_everything
from rnnkit.tasks import TASKS
from rnnkit.tasks.forecast import SeriesDataConfig
from rnnkit.train import distributed
from rnnkit.train.options import TrainConfig
from rnnkit.train.trainer import Trainer


class RunConfig(Config):
    """One run: which task, its data, its model, and how to train it; written into the run directory."""

    task: Literal["forecast"]
    out_dir: str = "runs/run"
    data: SeriesDataConfig
    model: dict[str, Any] = Field(default_factory=dict, description="the task model's config; name picks it")
    train: TrainConfig = TrainConfig()


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override and validate a run config, the model section included (before any data loads)."""
    config = load_config(RunConfig, path, overrides)
    model = {"name": TASKS[config.task].DEFAULT_MODEL, **config.model}
    config.model = model
    model_config({"input_size": 1, **model})  # unknown or bad model keys fail now, not after loading data
    return config


def train_run(config: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate on the test part, and save ``<out_dir>/bundle``; returns the test metrics."""
    dist = distributed.setup(config.train.device)
    try:
        task, run_dir = TASKS[config.task], Path(config.out_dir)
        prepared = task.prepare(config.data)
        model_cfg = model_config({**prepared.model_defaults, **config.model})
        seed_everything(config.train.seed)
        model = build_model(model_cfg)
        resolved = config.model_copy(update={"model": model_cfg.model_dump(mode="json")})
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            dump_yaml(resolved, run_dir / "config.yaml")
        trainer = Trainer(model, config.train, run_dir, collate=prepared.collate, dist=dist)
        trainer.fit(prepared.train, prepared.validation, resume=resume)
        if not dist.is_main:
            return {}
        metrics = task.evaluate(model, prepared.test, prepared.preprocessing)
        metrics.update(steps=trainer.step, best_step=trainer.best_step, stopped_early=trainer.stopped_early)
        bundle = save_bundle(
            run_dir / "bundle", model, resolved.model_dump(mode="json"), prepared.preprocessing, metrics
        )
        log(task.metrics_table(metrics))
        log(f"run directory {run_dir}: config.yaml, log.csv, loss.png, checkpoints/, bundle {bundle}")
        return metrics
    finally:
        distributed.teardown()
