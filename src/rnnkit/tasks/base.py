"""What a task is: one kind of problem, from a file on disk to a trained model and its use.

A task names its data config, turns data into datasets (``prepare``), says which model keys the
data fixes, judges a trained model beside baselines (``evaluate``), draws its plots, and hands out a
:class:`Predictor` with the verbs it supports. The run wiring (:mod:`rnnkit.run`) and the CLI know
only this contract; adding a task is one subclass and one :func:`rnnkit.tasks.register_task` call::

    class Echo(Task[EchoData, Prepared]):
        name, data_config, default_model = "echo", EchoData, "echo_model"
        def prepare(self, config, preprocessing=None, path=None, batch_size=32): ...
        def evaluate(self, model, prepared): ...

    register_task(Echo())
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from rnnkit.config import Config
from rnnkit.errors import ConfigError, DataError, RnnkitError

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from rnnkit.bundle import Bundle


def _stack_pairs(batch):
    from rnnkit.data import stack_pairs

    return stack_pairs(batch)


@dataclass(kw_only=True)
class Prepared:
    """Datasets for one run and the preprocessing state a bundle keeps; tasks subclass it with the
    typed state their evaluation and plots need."""

    train: Dataset | None
    validation: Dataset | None
    test: Dataset | None
    preprocessing: dict[str, Any]
    collate: Callable = _stack_pairs
    part: str = field(default="test part", repr=False)  # what ``test`` holds, said in reports


@dataclass(frozen=True)
class ModelKeys:
    """Model config keys a task sets: ``fixed`` ones the user may not change, ``suggested`` defaults."""

    fixed: Mapping[str, Any] = field(default_factory=dict)
    suggested: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prelude:
    """A run made before training (ULMFiT's language-model stage): its config as plain data (task,
    data, model, train; saved into ``config["out_dir"]``), and the data keys of this run once it is
    done (its bundle's path in place of the stage), so the saved config repeats what was trained."""

    config: Mapping[str, Any]
    data_after: Mapping[str, Any]
    what: str  # what it is, for the log


class Report(dict):
    """Evaluation metrics (a plain dict, JSON-ready) that print as the task's table."""

    def __init__(self, metrics: Mapping[str, Any], table: str) -> None:
        super().__init__(metrics)
        self.table = table

    def __str__(self) -> str:
        return self.table


D = TypeVar("D", bound=Config)
P = TypeVar("P", bound=Prepared)


class Task(ABC, Generic[D, P]):
    """One kind of problem. Subclasses set the class attributes and implement the abstract methods.

    A data config may name its file keys in a class attribute ``path_keys`` (e.g. ``("path",)``):
    relative paths under them in a config file are then read from the file's folder.
    """

    name: ClassVar[str]
    data_config: ClassVar[type[Config]]
    default_model: ClassVar[str]
    # model keys known only once the data is read (e.g. the vocabulary size) -> what fixes them
    fitted_keys: ClassVar[Mapping[str, str]] = {}
    # what a fitted key stands at while a config is checked before the data is read (default 2)
    stand_ins: ClassVar[Mapping[str, Any]] = {}
    # what a bundle's preprocessing must hold for the predictor (checked when a bundle is loaded)
    preprocessing_keys: ClassVar[tuple[str, ...]] = ()
    # whether a backtest can refit the model (evaluate.refit_every; evaluate takes ``predicted``)
    refits: ClassVar[bool] = False
    # what trains the model: "supervised" (the Trainer, over ``prepare``'s datasets) or "ppo" (an
    # agent in the environment the data section names: rnnkit.train.ppo)
    trainer: ClassVar[str] = "supervised"

    @abstractmethod
    def prepare(
        self,
        config: D,
        preprocessing: dict[str, Any] | None = None,
        path: str | Path | None = None,
        batch_size: int = 32,
    ) -> P:
        """Datasets and fitted preprocessing. With a bundle's ``preprocessing`` nothing is fitted;
        with ``path`` as well, all of that file is the evaluated part."""

    def model_name(self, config: D) -> str:
        """The model a run of this data section builds unless its model section names one."""
        return self.default_model

    def model_keys(self, config: D, prepared: P | None = None) -> ModelKeys:
        """What the data section (and once read, the data) fixes or suggests in the model config."""
        return ModelKeys()

    def check_model(self, model: Mapping[str, Any], prepared: P) -> None:
        """Raise ConfigError when the model section the user wrote cannot fit the data read."""

    def prelude(self, config: D, prepared: P, run_dir: Path) -> Prelude | None:
        """A run to make (into a folder of ``run_dir``) before this one trains, whose bundle this one
        starts from."""
        return None

    def sample(self, prepared: P, max_series: int, seed: int) -> P:
        """``prepared`` to be evaluated on ``max_series`` of its series (``evaluate.max_series``), drawn
        with ``seed``; a task without series refuses it."""
        raise ConfigError(f"evaluate.max_series samples the series of a forecast; drop it for {self.name}")

    def initialize(self, model: nn.Module, prepared: P, config: D, log: Callable[[str], None]) -> None:
        """Set up a freshly built model from the data (e.g. pretrained vectors) before training."""

    @abstractmethod
    def evaluate(self, model: nn.Module, prepared: P) -> dict[str, Any]:
        """Metrics of the model beside baselines on ``prepared.test``: plain JSON data."""

    @abstractmethod
    def metrics_table(self, metrics: Mapping[str, Any]) -> str:
        """``evaluate``'s metrics as the table the CLI prints."""

    def plots(self, model: nn.Module, prepared: P, out_dir: Path, config: D, metrics) -> list[Path]:
        """PNG files written into ``out_dir`` after training."""
        return []

    def predictor(self, bundle: Bundle) -> Predictor:
        """The object ``rnnkit.load`` returns for this task's bundles."""
        return Predictor(self, bundle)

    def report(self, metrics: Mapping[str, Any]) -> Report:
        return Report(metrics, self.metrics_table(metrics))


class Predictor:
    """A trained bundle ready to use: ``rnnkit.load(path)`` returns the one its task defines.

    Every predictor has ``describe()`` and ``evaluate(data)``; a task's predictor adds the verbs it
    supports (``forecast``, ``predict``, ``generate``, ``explain``). The CLI and the HTTP server
    call these and only print or serialise what they return.
    """

    verbs: ClassVar[tuple[str, ...]] = ("describe", "evaluate")

    def __init__(self, task: Task, bundle: Bundle) -> None:
        self.task, self.bundle = task, bundle
        self.model = bundle.model
        self.preprocessing = bundle.preprocessing
        missing = [key for key in task.preprocessing_keys if key not in (bundle.preprocessing or {})]
        if missing:
            raise DataError(
                f"{bundle.path}/preprocessing.json lacks {', '.join(missing)}, which a {task.name} model "
                "needs: the bundle is damaged; save it again (rnnkit train, or copy it whole)"
            )
        self.data_config = task.data_config(**bundle.config["data"])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task.name} {str(self.bundle.path)!r} verbs={list(self.verbs)}>"

    def describe(self) -> dict[str, Any]:
        """The bundle's format, model config, metrics and files, the task and the verbs it offers."""
        from rnnkit.bundle import describe_bundle

        return {"task": self.task.name, "verbs": list(self.verbs), **describe_bundle(self.bundle.path)}

    def evaluate(self, data: str | Path | None = None, batch_size: int = 32) -> Report:
        """Metrics beside the baselines on the training data's test part, or on all of ``data``
        (a file laid out as the training data)."""
        prepared = self.task.prepare(self.data_config, self.preprocessing, data, batch_size=batch_size)
        return self.task.report(self.task.evaluate(self.model, prepared))

    def format(self, result: Any) -> str:
        """One result of ``predict`` as the line ``rnnkit predict`` prints (JSON unless a task says)."""
        import json

        return json.dumps(result, default=str)

    def _unsupported(self, verb: str) -> RnnkitError:
        offered = ", ".join(v for v in self.verbs if v not in Predictor.verbs) or "none"
        return RnnkitError(
            f"a {self.task.name} model does not {verb}; this bundle ({self.bundle.path}) offers "
            f"describe, evaluate and: {offered}"
        )

    def forecast(self, data, horizon: int | None = None, **options):
        raise self._unsupported("forecast")

    def predict(self, inputs, **options):
        raise self._unsupported("predict")

    def generate(self, prompt: str, max_tokens: int = 50, **options):
        raise self._unsupported("generate")

    def explain(self, inputs, **options):
        raise self._unsupported("explain")

    def session(self, condition: Any = None, **options):
        raise self._unsupported("keep a session (read a sequence as it arrives)")
