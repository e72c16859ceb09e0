"""Classify numeric recordings (sensor sequences, ECG beats, spoken-vowel features) of any length.

The data are labelled recordings read by :func:`rnnkit.data.recordings.read_recordings` (``.ts`` of
the UCR/UEA archive, ``.npz``, or a long table): the official training file (``path``) and test
file (``test_path``), or one file split by ``test``. Model selection (early stopping) uses a
stratified, seeded ``validation`` share of the training part only. Each channel is standardised
by its mean and spread over the training part's steps. The model is the text task's
:class:`~rnnkit.models.SequenceClassifier` over numbers (``input_size`` = channels), with its
options for recordings: a convolutional front end (``model.conv_channels``) and a hierarchical
encoder (``model.chunk_size``).

The test table gives accuracy and macro F1 beside the majority class and two nearest-neighbour
classifiers over the standardised training recordings: 1-NN by Euclidean distance (recordings of
other lengths resampled to the training part's longest, linearly per channel) and 1-NN by dynamic
time warping (full window, multivariate: ``dtaidistance``, the ``rnnkit[dtw]`` extra).

    task: classify_series
    data: {path: BasicMotions_TRAIN.ts, test_path: BasicMotions_TEST.ts, validation: 0.25}
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset

from rnnkit.config import Config
from rnnkit.data import Labels, make_scaler, pad_collate, scaler_from_state
from rnnkit.data.labels import stratified_split
from rnnkit.data.recordings import Recordings, read_recordings
from rnnkit.errors import DataError
from rnnkit.files import cache_dir, downloaded
from rnnkit.metrics import classification_metrics, confusion_lines, majority_baseline
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task


class RecordingsDataConfig(Config):
    """Where the recordings are and how to split them (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path", "test_path")

    archive: str | None = Field(
        None,
        description="a UCR/UEA data set from sktime's wheel (make sensors downloads it), e.g. BasicMotions",
    )
    path: str | None = Field(None, description="the training recordings (.ts, .npz, or a long table)")
    test_path: str | None = Field(None, description="the test recordings; none: split path by test")
    test: float = Field(0.2, ge=0, lt=1, description="share of path held out for testing when no test_path")
    validation: float = Field(0.2, ge=0, lt=1, description="share of the training part for model selection")
    split_seed: int = 0
    id_column: str = Field("id", description="long tables: the recording id column")
    time_column: str | None = Field(None, description="long tables: the column that orders steps")
    label_column: str = Field("label", description="long tables: the label column")
    channels: list[str] | None = Field(None, description="long tables: channel columns (default: the rest)")
    standardise: bool = Field(True, description="each channel by its training mean and spread")

    @model_validator(mode="after")
    def _one_source(self) -> RecordingsDataConfig:
        if (self.archive is None) == (self.path is None):
            raise ValueError("give path (with test_path, or a test share) or archive, one of them")
        if self.archive is not None and self.test_path is not None:
            raise ValueError("an archive brings its own test file: drop test_path")
        return self

    def files(self) -> tuple[str, str | None]:
        """(training file, test file or None): the archive's official pair, or path and test_path."""
        if self.archive is None:
            return self.path, self.test_path
        return tuple(str(f) for f in archive_files(self.archive))

    def columns(self) -> dict[str, Any]:
        return {
            "id_column": self.id_column,
            "time_column": self.time_column,
            "label_column": self.label_column,
            "channels": self.channels,
        }


class RecordingDataset(Dataset):
    """Recordings (T_i, C) float32 tensors and their class ids; ``lengths`` for length bucketing."""

    def __init__(self, sequences: list[np.ndarray], targets: torch.Tensor) -> None:
        self.sequences = [torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)) for s in sequences]
        self.targets = targets
        self.lengths = np.array([len(s) for s in sequences], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[index], self.targets[index]


@dataclass(kw_only=True)
class RecordingsPrepared(Prepared):
    recordings: dict[str, Recordings]  # "train" and "test", standardised: for the baselines
    labels: Labels


def prepare(
    config: RecordingsDataConfig,
    preprocessing: dict[str, Any] | None = None,
    path: str | Path | None = None,
    batch_size: int = 32,
) -> RecordingsPrepared:
    """Datasets and the fitted channel scaler and labels; with a bundle's ``preprocessing`` and a
    ``path``, every recording of that file is the evaluated part."""
    if path is not None:
        if preprocessing is None:
            raise DataError("evaluating a file needs a trained bundle's preprocessing")
        train = validation = None
        test = read_recordings(path, **config.columns())
    else:
        train_file, test_file = config.files()
        everything = read_recordings(train_file, **config.columns())
        separate = None if test_file is None else read_recordings(test_file, **config.columns())
        shares = {"test": 0.0 if separate is not None else config.test, "validation": config.validation}
        i_train, i_val, i_test = stratified_split(
            everything.labels, shares["test"], shares["validation"], config.split_seed, "recordings"
        )
        train, validation = everything.subset(i_train), everything.subset(i_val)
        test = separate if separate is not None else everything.subset(i_test)
        _check_channels(train, test)
    if preprocessing is None:
        steps = np.concatenate(train.sequences)  # (sum T, C): the training part's steps
        scaler = make_scaler("standard" if config.standardise else "none").fit(steps)
        classes = train.classes or sorted({*train.labels, *test.labels, *validation.labels})
        labels = Labels(classes)
        preprocessing = {
            "scaler": scaler.state_dict(),
            "labels": labels.state_dict(),
            "channels": train.channels,
            "columns": config.columns(),
        }
    scaler = scaler_from_state(preprocessing["scaler"])
    labels = Labels.from_state(preprocessing["labels"])
    parts = {
        name: _scaled(part, scaler)
        for name, part in (("train", train), ("validation", validation), ("test", test))
    }
    datasets = {
        name: None if part is None or not len(part) else _dataset(part, labels)
        for name, part in parts.items()
    }
    return RecordingsPrepared(
        train=datasets["train"],
        validation=datasets["validation"],
        test=datasets["test"],
        preprocessing=preprocessing,
        collate=partial(pad_collate, pad_id=0),
        part=f"all of {path}" if path is not None else "test part",
        recordings={"train": parts["train"], "test": parts["test"]},
        labels=labels,
    )


def _check_channels(train: Recordings, test: Recordings) -> None:
    c_train, c_test = train.sequences[0].shape[1], test.sequences[0].shape[1]
    if c_train != c_test:
        raise DataError(f"the training recordings have {c_train} channels and the test ones {c_test}")


def _scaled(part: Recordings | None, scaler) -> Recordings | None:
    if part is None:
        return None
    return Recordings([scaler.transform(s) for s in part.sequences], part.labels, part.channels, part.classes)


def _dataset(part: Recordings, labels: Labels) -> RecordingDataset:
    return RecordingDataset(part.sequences, labels.encode(part.labels))


ARCHIVE_WHEEL = "sktime-1.2.0-py3-none-any.whl"  # ships UCR/UEA archives under sktime/datasets/data/


def archive_files(name: str) -> tuple[Path, Path]:
    """The TRAIN and TEST ``.ts`` files of archive ``name``, taken once from sktime's wheel in rnnkit's
    download cache (never installed or imported) into ``<cache>/ucr/<name>/``."""
    folder = cache_dir("ucr", name)
    files = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if all(f.is_file() for f in files):
        return files
    how = "run `make sensors`, or pip download --no-deps sktime==1.2.0"
    wheel = downloaded(ARCHIVE_WHEEL, f"data.archive {name}", how)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for f in files:
            member = f"sktime/datasets/data/{name}/{f.name}"
            if member not in names:
                known = sorted({n.split("/")[3] for n in names if n.endswith("_TRAIN.ts")})
                raise DataError(f"sktime's wheel has no archive {name!r}; it has {known}")
            folder.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp")
            tmp.write_bytes(archive.read(member))
            tmp.replace(f)
    return files


@torch.no_grad()
def probabilities(model: torch.nn.Module, dataset: RecordingDataset, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N,) for a binary head, (N, C) otherwise, in dataset order."""
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=partial(pad_collate, pad_id=0))
    return torch.cat([model.predict(b.inputs.to(device), lengths=b.lengths).float().cpu() for b in loader])


def evaluate(model: torch.nn.Module, prepared: RecordingsPrepared) -> dict[str, Any]:
    """Test accuracy and macro F1 of the model beside the majority class, 1-NN Euclidean and 1-NN DTW."""
    labels, test = prepared.labels, prepared.test
    head = model.config.head
    results: dict[str, Any] = {
        "part": prepared.part,
        "examples": len(test),
        "classes": list(labels.classes),
        "head": head,
        "model": classification_metrics(probabilities(model, test), test.targets, head, len(labels)),
        "skipped": {},
    }
    train = prepared.recordings["train"]
    if train is not None and len(train):
        train_ids = labels.encode(train.labels)
        results["majority"] = majority_baseline(train_ids, test.targets, len(labels))
        for name, distance in (("1nn_euclidean", euclidean_distances), ("1nn_dtw", dtw_distances)):
            try:
                nearest = distance(train.sequences, prepared.recordings["test"].sequences).argmin(0)
            except DataError as error:
                results["skipped"][name] = str(error)
                continue
            predicted = train_ids[torch.from_numpy(nearest)]
            onehot = torch.nn.functional.one_hot(predicted, len(labels)).float()
            probs = onehot[:, 1] if head == "binary" else onehot
            results[name] = classification_metrics(probs, test.targets, head, len(labels))
    return results


def euclidean_distances(train: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """(N_train, N_test) Euclidean distances; recordings resampled to the training part's longest."""
    length = max(len(s) for s in train)
    a, b = (np.stack([_resample(s, length).ravel() for s in part]) for part in (train, test))
    squared = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    return np.sqrt(np.maximum(squared, 0.0))


def _resample(sequence: np.ndarray, length: int) -> np.ndarray:
    if len(sequence) == length:
        return sequence.astype(np.float64)
    old = np.linspace(0.0, 1.0, len(sequence))
    new = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(new, old, sequence[:, c]) for c in range(sequence.shape[1])], axis=1)


def dtw_distances(train: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """(N_train, N_test) multivariate DTW distances (full window), by dtaidistance's C code."""
    try:
        from dtaidistance import dtw_ndim
    except ImportError:
        raise DataError("the 1-NN DTW baseline needs dtaidistance: pip install 'rnnkit[dtw]'") from None
    series = [np.ascontiguousarray(s, dtype=np.float64) for s in (*train, *test)]
    n = len(train)
    block = ((0, n), (n, len(series)))
    full = dtw_ndim.distance_matrix_fast(series, block=block, compact=False, parallel=False)
    return np.asarray(full)[:n, n:]


def metrics_table(results: dict[str, Any]) -> str:
    names = {
        "model": "model",
        "majority": "majority class",
        "1nn_euclidean": "1-NN Euclidean",
        "1nn_dtw": "1-NN DTW (full window)",
    }
    part, count = results.get("part", "test part"), len(results["classes"])
    lines = [f"{part}: {results['examples']} recordings, {count} classes"]
    lines += [f"  ({names[who]} skipped: {why})" for who, why in results.get("skipped", {}).items()]
    lines.append(f"  {'':<26}{'accuracy':>10}{'F1 macro':>10}")
    for key, label in names.items():
        if key in results:
            lines.append(f"  {label:<26}{results[key]['accuracy']:>10.4f}{results[key]['f1_macro']:>10.4f}")
    lines += confusion_lines(
        results["classes"], results["model"]["confusion_matrix"], "confusion matrix of the model"
    )
    return "\n".join(lines)


class ClassifySeriesTask(Task[RecordingsDataConfig, RecordingsPrepared]):
    """Label whole numeric recordings with one class each."""

    name = "classify_series"
    data_config = RecordingsDataConfig
    default_model = "classifier"
    fitted_keys: ClassVar = {"input_size": "the recordings' channels", "num_classes": "the classes"}
    preprocessing_keys = ("scaler", "labels", "channels", "columns")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> RecordingsPrepared:
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        if prepared is None:
            return ModelKeys()
        classes = len(prepared.labels)
        fixed = {"input_size": len(prepared.preprocessing["channels"]), "num_classes": classes}
        return ModelKeys(fixed, {"head": "binary" if classes == 2 else "multiclass"})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.classify_series_use import RecordingsPredictor

        return RecordingsPredictor(self, bundle)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        from rnnkit import plots

        path = out_dir / "confusion_matrix.png"
        return [plots.plot_confusion_matrix(metrics["model"]["confusion_matrix"], metrics["classes"], path)]


register_task(ClassifySeriesTask())
