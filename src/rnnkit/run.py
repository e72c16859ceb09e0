"""A whole run from one config: data, model, training, evaluation and the bundle.

    config = load_run_config("configs/sine.yaml", ["train.epochs=5"])
    metrics = train_run(config)

The only module that knows both tasks and the trainer: it asks the config's task for the data and
the model keys the data fixes, trains with the Trainer, and saves what the task evaluates. Under
torchrun every process runs this; only rank 0 writes files and prints.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydantic
from pydantic import Field

from rnnkit.bundle import save_bundle
from rnnkit.config import Config, apply_overrides, dump_yaml, origin, parse_override, read_yaml, validate
from rnnkit.errors import ConfigError, RnnkitError
from rnnkit.files import locked
from rnnkit.models import build_model, config_class
from rnnkit.refit import EvaluateConfig, refit_forecasts
from rnnkit.runtime import seed_everything
from rnnkit.tasks import BUILT_IN_TASKS, Prelude, Prepared, Task, get_task
from rnnkit.train import distributed
from rnnkit.train.options import TrainConfig
from rnnkit.train.ppo import PPOTrainer, check_train
from rnnkit.train.trainer import Trainer


class RunConfig(Config):
    """One run: which task, its data, its model, and how to train it; written into the run directory.

    ``data`` is the task's own data config (see :func:`run_config_type`); ``model`` names a
    registered model (default: the task's) with its keys.
    """

    task: str = Field(description=f"{', '.join(BUILT_IN_TASKS)}, or a registered task")
    out_dir: str = Field("runs/run", coerce_numbers_to_str=True, description="the run directory")
    data: Config
    model: dict[str, Any] = Field(default_factory=dict, description="the task model's config; name picks it")
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    _notes: list[str] = pydantic.PrivateAttr(default_factory=list)  # said when training starts

    @property
    def notes(self) -> list[str]:
        """What loading the config did that the user should hear (an if_missing section applied)."""
        return self._notes


IF_MISSING = "if_missing"  # a config's fallback: keys that replace its own when a file is missing


@functools.cache
def run_config_type(task: Task) -> type[RunConfig]:
    """RunConfig with ``data`` typed as ``task``'s data config, so its keys are checked and listed."""
    name = "".join(part.title() for part in task.name.split("_")) + "RunConfig"
    return pydantic.create_model(name, __base__=RunConfig, data=(task.data_config, ...))


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override and validate a run config, the model section included (before any data loads).

    Relative paths in the file's data section are read from the config file's folder; paths given
    as overrides, from the working directory. An error names the file or the override at fault.
    """
    path, overrides = Path(path), list(overrides)
    raw = read_yaml(path)
    task_overrides = [o for o in overrides if parse_override(o)[0] == ["task"]]
    try:
        task = get_task(apply_overrides(raw, task_overrides).get("task"))
    except ConfigError as error:
        raise ConfigError(f"{origin('task', str(path), task_overrides)}: task: {error}") from None
    raw, notes = _if_missing(raw, path)
    if isinstance(raw.get("data"), dict):
        raw["data"] = _resolve_paths(raw["data"], task, path.parent)
    config = run_config(apply_overrides(raw, overrides), task, str(path), overrides)
    config._notes = notes
    return config


def _if_missing(raw: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """``raw`` without its ``if_missing`` section, merged into it when the file that section names
    is missing (relative to the config's folder); what was done, to say.

        if_missing:                       # e.g. a pretrained bundle the config starts from
          path: ../runs/lm_pretrain/bundle
          hint: make lm-pretrain makes it
          data: {encoder_from: null, level: word}     # merged key by key; null removes a key
    """
    fallback = raw.pop(IF_MISSING, None)
    if fallback is None:
        return raw, []
    if not isinstance(fallback, dict) or not isinstance(fallback.get("path"), str):
        raise ConfigError(
            f"{path}: {IF_MISSING} must be a mapping with a path (a file or folder) and sections"
        )
    unknown = sorted(set(fallback) - {"path", "hint", "data", "model", "train", "evaluate"})
    if unknown:
        raise ConfigError(
            f"{path}: {IF_MISSING}.{unknown[0]}: expected path, hint, data, model, train, evaluate"
        )
    target = (path.parent / fallback.pop("path")).resolve()
    hint = fallback.pop("hint", None)
    if target.exists():
        return raw, [f"{target} is there: {path.name}'s if_missing keys are not used"]
    merged = _merged(raw, fallback)
    return merged, [
        f"{target} is missing: {path.name}'s if_missing keys apply" + (f" ({hint})" if hint else "")
    ]


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, section by section; a None value removes the key."""
    result = dict(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def run_config(
    raw: dict[str, Any], task: Task, source: str = "config", overrides: Iterable[str] = ()
) -> RunConfig:
    """``raw`` (plain data, paths resolved) validated as ``task``'s run config, the model keys too."""
    config = validate(run_config_type(task), raw, source, overrides)
    config.model = {"name": task.model_name(config.data), **config.model}
    resolve_model(config, source=source, overrides=overrides)  # bad model keys fail now
    if task.trainer == "ppo":
        try:
            check_train(config.train, config.data)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    if config.evaluate.max_series is not None and type(task).sample is Task.sample:
        where = origin("evaluate.max_series", source, overrides)
        raise ConfigError(
            f"{where}: evaluate.max_series samples the series of a forecast: drop it for {task.name}"
        )
    if config.evaluate.refit_every is not None and not task.refits:
        where = origin("evaluate.refit_every", source, overrides)
        raise ConfigError(f"{where}: evaluate.refit_every refits forecasters only: drop it for {task.name}")
    return config


def _resolve_paths(data: dict[str, Any], task: Task, folder: Path) -> dict[str, Any]:
    keys = getattr(task.data_config, "path_keys", ())
    resolved = {k: str((folder / v).resolve()) for k, v in data.items() if k in keys and isinstance(v, str)}
    return {**data, **resolved}


def resolve_model(
    config: RunConfig, prepared: Prepared | None = None, source: str = "model", overrides: Iterable[str] = ()
) -> Config:
    """The model config: the model section plus what the data fixes (window sizes, column counts,
    and once the data is read, vocabulary size and classes) and suggests (a head that fits the labels)."""
    task = get_task(config.task)
    keys = task.model_keys(config.data, prepared)
    where = lambda key: origin(f"model.{key}", source, overrides)  # noqa: E731
    for key, what in task.fitted_keys.items():
        if key in config.model:
            raise ConfigError(f"{where(key)}: model.{key} is fixed by the data ({what}): drop model.{key}")
    fixed = dict(keys.fixed)
    if prepared is None:
        fixed.update({key: task.stand_ins.get(key, 2) for key in task.fitted_keys})
    else:
        task.check_model(config.model, prepared)
    for key, value in fixed.items():
        if key in config.model and config.model[key] != value:
            raise ConfigError(
                f"{where(key)}: model.{key} is fixed by the data section to {value}, got "
                f"{config.model[key]}: drop model.{key}"
            )
    try:
        cls = config_class(config.model.get("name"))
    except ConfigError as error:
        raise ConfigError(f"{where('name')}: model.name: {error}") from None
    suggested = {k: v for k, v in keys.suggested.items() if k in cls.model_fields}  # a model without them
    return validate(cls, {**suggested, **config.model, **fixed}, source, overrides, prefix="model.")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was saved and how to go on."""


def train_run(
    config: RunConfig, resume: bool = False, overwrite: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train, evaluate on the test part, and save ``<out_dir>/bundle``; returns the test metrics.

    A directory that already holds a run is kept: this one goes to ``<out_dir>-2`` (and so on)
    unless ``overwrite`` (replace it) or ``resume`` (continue it). Two trainings never write into
    one directory at once.
    """
    dist = distributed.setup(config.train.device)
    try:
        for note in config.notes if dist.is_main else ():
            log(note)
        task = get_task(config.task)
        prepared = task.prepare(config.data, batch_size=config.train.batch_size)
        model_cfg = resolve_model(config, prepared)  # every user error comes before any file is written
        say = log if dist.is_main else lambda _: None
        run_dir = free_run_dir(Path(config.out_dir), resume or overwrite, say)
        stage = task.prelude(config.data, prepared, run_dir)
        if stage is not None and dist.enabled:
            raise ConfigError(
                f"{stage.what} runs on one process: train it first with `rnnkit train` alone (it saves "
                f"{stage.config['out_dir']}/bundle), then start torchrun again"
            )
        if not dist.is_main:
            return _train(config, task, prepared, model_cfg, run_dir, resume, dist, say)
        with locked(run_dir, blocking=False) as mine:
            if not mine:
                raise ConfigError(
                    f"another rnnkit process is training in {run_dir}: wait for it, or set out_dir=..."
                )
            if overwrite and not resume:
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            if stage is not None:
                config = _prelude(config, stage, run_dir, resume, log)
                resume = resume and holds_run(run_dir)  # interrupted in the stage: this model starts now
            return _train(config, task, prepared, model_cfg, run_dir, resume, dist, log)
    finally:
        distributed.teardown()


def _prelude(
    config: RunConfig, stage: Prelude, run_dir: Path, resume: bool, log: Callable[[str], None]
) -> RunConfig:
    """Make the run ``stage`` asks for (or, resuming, reuse or continue it); ``config`` as it stands
    once the stage is done (starting from its bundle), so the saved config.yaml repeats this run.
    Until then ``run_dir/config.yaml`` holds ``config`` with the stage: `rnnkit resume` goes on."""
    sub = dict(stage.config)
    shared = config.train.model_dump(include={"device", "seed", "progress", "tensorboard"})
    sub["train"] = {**shared, **sub["train"]}
    sub_config = run_config(sub, get_task(sub["task"]), stage.what)
    bundle = Path(sub_config.out_dir) / "bundle"  # where stage.data_after points
    if resume and (bundle / "bundle.json").is_file():
        log(f"{stage.what}: done before, {bundle}")
    else:
        log(f"{stage.what} ({sub_config.out_dir})")
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config.model_copy(update={"out_dir": str(run_dir)}), run_dir / "config.yaml")
        try:
            train_run(sub_config, resume=resume and holds_run(bundle.parent), overwrite=True, log=log)
        except RunInterrupted:
            raise RunInterrupted(
                f"interrupted while {stage.what}: `rnnkit resume {run_dir}` goes on from its last "
                f"checkpoint (if one was written), then trains the {config.task} model"
            ) from None
        log(f"\nthe adapted language model is {bundle}; training the {config.task} model from it")
    return config.model_copy(update={"data": config.data.model_copy(update=dict(stage.data_after))})


def holds_run(path: Path) -> bool:
    """A bundle or a checkpoint to resume from (last.pt, or last.prev.pt left by a crash)."""
    checkpoints = [path / "checkpoints" / name for name in ("last.pt", "last.prev.pt")]
    return (path / "bundle" / "bundle.json").is_file() or any(c.is_file() for c in checkpoints)


def free_run_dir(path: Path, reuse: bool, log: Callable[[str], None] | None) -> Path:
    """``path``, or when it holds a run and may not be reused, the first free ``path-N``."""
    if reuse or not holds_run(path):
        return path
    n = 2
    while holds_run(path.with_name(f"{path.name}-{n}")):
        n += 1
    new = path.with_name(f"{path.name}-{n}")
    if log is not None:
        log(
            f"{path} holds an earlier run (kept; `rnnkit resume {path}` continues it, --overwrite replaces "
            f"it): writing this one to {new}"
        )
    return new


def _train(config: RunConfig, task: Task, prepared: Prepared, model_cfg: Config, run_dir: Path, resume: bool,
           dist, log: Callable[[str], None]) -> dict:  # fmt: skip
    seed_everything(config.train.seed)
    model = build_model(model_cfg)
    task.initialize(model, prepared, config.data, log)
    resolved = config.model_copy(update={"model": model_cfg.model_dump(mode="json"), "out_dir": str(run_dir)})
    if dist.is_main:  # without the keys the data fits: `rnnkit resume` reads it as a config
        again = {key: value for key, value in resolved.model.items() if key not in task.fitted_keys}
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(resolved.model_copy(update={"model": again}), run_dir / "config.yaml")
    if task.trainer == "ppo":  # an agent learns from the environment it acts in, not from a dataset
        if dist.enabled:
            raise ConfigError("PPO runs on one process: start it with `rnnkit train`, not torchrun")
        trainer = PPOTrainer(model, config.train, config.data, run_dir)
        fit = functools.partial(trainer.fit, resume=resume)
    else:
        trainer = Trainer(model, config.train, run_dir, collate=prepared.collate, dist=dist)
        fit = functools.partial(trainer.fit, prepared.train, prepared.validation, resume=resume)
    try:
        fit()
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted(trainer)) from None
    if not dist.is_main:
        return {}
    how = f"stopped early, weights of step {trainer.best_step} restored" if trainer.stopped_early else "done"
    log(f"\ntrained {trainer.step} steps ({how}); evaluating on the {prepared.part}")
    save = functools.partial(save_bundle, run_dir / "bundle", model, resolved.model_dump(mode="json"))
    if config.evaluate.max_series is not None:  # judged (and plotted) on a sample of the series
        prepared = task.sample(prepared, config.evaluate.max_series, config.train.seed)
    try:
        metrics = _evaluate(config, task, model, prepared, log)
    except KeyboardInterrupt:  # the model is trained: keep it, the table can be printed later
        bundle = save(prepared.preprocessing)
        raise RunInterrupted(
            f"interrupted while evaluating; the trained model is saved in {bundle}: "
            f"`rnnkit evaluate {bundle}` prints the table"
        ) from None
    metrics.update(steps=trainer.step, best_step=trainer.best_step, stopped_early=trainer.stopped_early)
    bundle = save(prepared.preprocessing, metrics)
    log(task.metrics_table(metrics))
    written = ["config.yaml", "log.csv", "checkpoints/", f"{bundle.name}/"]
    try:
        written += ["loss.png"] * (task.trainer != "ppo") + [
            p.name for p in task.plots(model, prepared, run_dir, config.data, metrics)
        ]
    except RnnkitError as error:  # matplotlib is an optional extra
        log(f"no plots: {error}")
    log(f"\nwrote {run_dir}/: {', '.join(written)}")
    return metrics


def _evaluate(config: RunConfig, task: Task, model, prepared: Prepared, log: Callable[[str], None]) -> dict:
    every = config.evaluate.refit_every
    if every is None:
        return task.evaluate(model, prepared)
    epochs = config.evaluate.refit_epochs
    log(f"refitting every {every} forecast origins ({epochs} epoch{'s' * (epochs > 1)} each, warm-started)")
    predicted = refit_forecasts(model, prepared, config.train, every, epochs)
    metrics = task.evaluate(model, prepared, predicted)
    metrics["refit"] = {"every": every, "epochs": epochs}
    return metrics


def _interrupted(trainer: Trainer | PPOTrainer) -> str:
    last = trainer.checkpoint_path
    if last is None or not last.is_file():
        return "interrupted before the first checkpoint: nothing was saved"
    return (
        f"interrupted at step {trainer.step}; the last checkpoint is {last}: "
        f"continue with `rnnkit resume {last.parent.parent}`"
    )
