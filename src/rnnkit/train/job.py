"""A whole run from one config: data, model, training, evaluation and the bundle.

    config = load_run_config("configs/sine.yaml", ["train.epochs=5"])
    metrics = train_run(config)

Under torchrun every process runs this; only rank 0 writes files and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from rnnkit.bundle import save_bundle
from rnnkit.config import Config, dump_yaml, load_config
from rnnkit.errors import ConfigError, RnnkitError
from rnnkit.models import build_model, model_config
from rnnkit.runtime import seed_everything
from rnnkit.tasks import TASKS, Prepared
from rnnkit.tasks.classify import TextDataConfig
from rnnkit.tasks.forecast import SeriesDataConfig
from rnnkit.tasks.language import CorpusDataConfig
from rnnkit.train import distributed
from rnnkit.train.options import TrainConfig
from rnnkit.train.trainer import Trainer


class RunConfig(Config):
    """One run: which task, its data, its model, and how to train it; written into the run directory."""

    task: Literal["forecast", "classify", "language_model"]
    out_dir: str = Field("runs/run", coerce_numbers_to_str=True)
    data: Annotated[SeriesDataConfig | TextDataConfig | CorpusDataConfig, Field(discriminator="kind")]
    model: dict[str, Any] = Field(default_factory=dict, description="the task model's config; name picks it")
    train: TrainConfig = TrainConfig()

    @model_validator(mode="before")
    @classmethod
    def _data_kind(cls, values):
        """The task says which kind of data section it reads; ``data.kind`` need not be written."""
        if isinstance(values, dict) and isinstance(values.get("data"), dict):
            if values.get("task") in TASKS:
                kind = TASKS[values["task"]].DataConfig.model_fields["kind"].default
                values = {**values, "data": {"kind": kind, **values["data"]}}
            else:  # the task is wrong or missing: say that alone, not how the data fits no task
                values = {**values, "data": {"kind": "series"}}
        return values

    @model_validator(mode="after")
    def _data_fits_task(self):
        expected = TASKS[self.task].DataConfig
        if not isinstance(self.data, expected):
            raise ValueError(
                f"task {self.task!r} reads data of kind {expected.model_fields['kind'].default!r}"
            )
        return self


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override and validate a run config, the model section included (before any data loads)."""
    config = load_config(RunConfig, path, overrides)
    config.model = {"name": TASKS[config.task].DEFAULT_MODEL, **config.model}
    resolve_model(config)  # bad model keys fail now, before any data loads
    return config


def resolve_model(config: RunConfig, prepared: Prepared | None = None) -> Config:
    """The model config: the model section plus what the data fixes (window sizes, column counts,
    and once the data is read, vocabulary size and classes) and suggests (a head that fits the labels)."""
    task = TASKS[config.task]
    fixed = dict(task.model_defaults(config.data))
    later = getattr(task, "FIXED_BY_DATA", {})  # known once the data is read; stand-ins until then
    for key, what in later.items():
        if key in config.model:
            raise ConfigError(f"model.{key} is fixed by the data ({what}): drop model.{key}")
    suggested = {}
    if prepared is None:
        fixed.update({key: 2 for key in later})  # valid for every model that takes them
    elif hasattr(task, "model_fixed"):
        fixed.update(task.model_fixed(prepared))
        suggested = getattr(task, "model_suggestions", lambda _: {})(prepared)
        if hasattr(task, "check_model"):
            task.check_model(config.model, prepared)
    for key, value in fixed.items():
        if key in config.model and config.model[key] != value:
            raise ConfigError(
                f"model.{key} is fixed by the data section to {value}, got {config.model[key]}: "
                f"drop model.{key}"
            )
    return model_config({**suggested, **config.model, **fixed})


def train_run(config: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate on the test part, and save ``<out_dir>/bundle``; returns the test metrics."""
    dist = distributed.setup(config.train.device)
    try:
        task, run_dir = TASKS[config.task], Path(config.out_dir)
        options = {"batch_size": config.train.batch_size} if getattr(task, "STREAMED", False) else {}
        prepared = task.prepare(config.data, **options)
        model_cfg = resolve_model(config, prepared)
        seed_everything(config.train.seed)
        model = build_model(model_cfg)
        if hasattr(task, "initialize"):
            task.initialize(model, prepared, config.data, log=log if dist.is_main else lambda _: None)
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
                p.name for p in task.write_plots(model, prepared, run_dir, config.data, metrics)
            ]
        except RnnkitError as error:  # matplotlib is an optional extra
            log(f"no plots: {error}")
        log(f"\nwrote {run_dir}/: {', '.join(written)}")
        return metrics
    finally:
        distributed.teardown()
