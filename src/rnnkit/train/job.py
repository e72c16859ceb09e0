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
from rnnkit.errors import ConfigError, RnnkitError
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
    out_dir: str = Field("runs/run", coerce_numbers_to_str=True)
    data: SeriesDataConfig
    model: dict[str, Any] = Field(default_factory=dict, description="the task model's config; name picks it")
    train: TrainConfig = TrainConfig()


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override and validate a run config, the model section included (before any data loads)."""
    config = load_config(RunConfig, path, overrides)
    config.model = {"name": TASKS[config.task].DEFAULT_MODEL, **config.model}
    resolve_model(config)  # bad model keys fail now, before any data loads
    return config


def resolve_model(config: RunConfig) -> Config:
    """The model config: the model section plus what the data fixes (window sizes, column counts)."""
    fixed = TASKS[config.task].model_defaults(config.data)
    for key, value in fixed.items():
        if key in config.model and config.model[key] != value:
            raise ConfigError(
                f"model.{key} is fixed by the data section to {value}, got {config.model[key]}: "
                f"drop model.{key}"
            )
    return model_config({**config.model, **fixed})


def train_run(config: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate on the test part, and save ``<out_dir>/bundle``; returns the test metrics."""
    dist = distributed.setup(config.train.device)
    try:
        task, run_dir = TASKS[config.task], Path(config.out_dir)
        prepared = task.prepare(config.data)
        model_cfg = resolve_model(config)
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
        metrics = task.evaluate(model, prepared)
        metrics.update(steps=trainer.step, best_step=trainer.best_step, stopped_early=trainer.stopped_early)
        resolved_dict = resolved.model_dump(mode="json")
        bundle = save_bundle(run_dir / "bundle", model, resolved_dict, prepared.preprocessing, metrics)
        how = (
            f"stopped early, weights of step {trainer.best_step} restored"
            if trainer.stopped_early
            else "done"
        )
        log(f"\ntrained {trainer.step} steps ({how}); evaluating on the test part")
        log(task.metrics_table(metrics))
        written = ["config.yaml", "log.csv", "checkpoints/", f"{bundle.name}/"]
        try:
            written += ["loss.png"] + [
                p.name for p in task.plot_test(model, prepared, run_dir, [1, config.data.horizon])
            ]
        except RnnkitError as error:  # matplotlib is an optional extra
            log(f"no plots: {error}")
        log(f"\nwrote {run_dir}/: {', '.join(written)}")
        return metrics
    finally:
        distributed.teardown()
