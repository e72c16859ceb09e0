"""Find anomalies in a signal: a recurrent model of normal behaviour, its errors as scores, flags.

The table's rows are time steps; ``columns`` are the signal's channels and ``label_column`` (when
the data has one) marks the anomalous steps with 1. The rows are cut in time: the first ``train``
share teaches the model what normal looks like, the next ``validation`` share (clean) normalises the
scores (median and IQR) and sets the threshold, the rest is the test part. Two scores
(``data.score``):

- ``reconstruction``: an autoencoder (``model.name: autoencoder``) rebuilds windows of ``window``
  steps; a step's score is its squared error averaged over the windows that cover it;
- ``forecast``: a forecaster (``model.name: forecaster``) predicts each step from the ``window``
  before it; a step's score is the squared one-step error.

Thresholds (``data.threshold``): the ``quantile`` of the validation part's scores, Tukey's fence
(``iqr``: the 75th percentile + ``iqr_k`` IQRs), or ``best_f1`` (the event F1 on a labelled
validation part). Flagged runs closer than ``merge_gap`` steps are merged into one event. The
test table gives precision, recall and F1 per point and per event, the point-adjusted F1 beside
them, for the model and two baselines scored the same way: a z-score of the values (from the
training part's mean and spread) and scikit-learn's IsolationForest on windows of ``window``
lagged values. The normalisation and the threshold are kept in the bundle for ``detect``.

    task: anomaly
    data: {dataset: mitdb, score: reconstruction, window: 64}
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch.utils.data import TensorDataset

from rnnkit.anomaly import (
    best_f1_threshold,
    detection_metrics,
    events,
    iqr_threshold,
    merge_gaps,
    normalise,
    quantile_threshold,
    robust_scale,
    smooth,
)
from rnnkit.config import Config
from rnnkit.data import make_scaler, scaler_from_state
from rnnkit.data.tables import read_table
from rnnkit.errors import DataError
from rnnkit.files import downloaded
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

MODELS = {"reconstruction": "autoencoder", "forecast": "forecaster"}


class AnomalyDataConfig(Config):
    """The signal, its parts in time, the score and the threshold (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    dataset: Literal["mitdb"] | None = Field(
        None,
        description="mitdb: an ECG recording with a labelled anomaly, from sktime's wheel (make anomaly)",
    )
    path: str | None = Field(None, description="a table (.csv, .tsv, .parquet, .jsonl), one row per step")
    columns: list[str] = Field(default_factory=list, description="the signal's channels (mitdb: data)")
    label_column: str | None = Field("label", description="1 on anomalous steps; ignored when absent")
    train: float = Field(0.5, gt=0, lt=1, description="first share of rows: normal behaviour to learn")
    validation: float = Field(0.2, gt=0, lt=1, description="next share: a clean part for scores' scale")
    window: int = Field(64, ge=2, description="steps a window holds (autoencoder) or a forecast reads")
    stride: int = Field(4, ge=1, description="steps between training windows")
    score: Literal["reconstruction", "forecast"] = "reconstruction"
    threshold: Literal["quantile", "iqr", "best_f1"] = "quantile"
    quantile: float = Field(0.995, gt=0, lt=1)
    iqr_k: float = Field(3.0, gt=0)
    merge_gap: int = Field(0, ge=0, description="flagged runs closer than this many steps become one event")
    smooth: int = Field(
        0, ge=0, description="scores averaged over this many steps around each (0: off), the baselines' too"
    )

    @model_validator(mode="after")
    def _fits(self) -> AnomalyDataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give path or dataset, one of them")
        if self.dataset == "mitdb" and not self.columns:
            self.columns = ["data"]
        if not self.columns:
            raise ValueError("name the signal's channels in columns, e.g. columns: [value]")
        if self.train + self.validation >= 1:
            raise ValueError(f"train {self.train} + validation {self.validation} leave no test part")
        return self


def read_signal(
    config: AnomalyDataConfig, path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(values (N, C) float64, labels (N,) bool or None) of the table."""
    if path is None and config.dataset == "mitdb":
        wheel = downloaded(
            "sktime-1.2.0-py3-none-any.whl",
            "dataset mitdb",
            "run `make anomaly`, or pip download --no-deps sktime==1.2.0",
        )
        with zipfile.ZipFile(wheel) as archive:
            frame = pd.read_csv(io.BytesIO(archive.read("sktime/datasets/data/mitdb/mitdb.csv")))
    else:
        frame = read_table(path or config.path)
    missing = [c for c in config.columns if c not in frame.columns]
    if missing:
        raise DataError(f"no column {missing} in the table; its columns are {list(frame.columns)}")
    values = frame[config.columns].to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if bad.size:
        raise DataError(f"the signal has missing values at rows {bad[:5].tolist()}: fill them first")
    if len(values) < 3 * config.window:
        raise DataError(f"{len(values)} rows are too few for windows of {config.window}: lower data.window")
    labels = None
    if config.label_column and config.label_column in frame.columns:
        labels = frame[config.label_column].to_numpy() > 0
    return values, labels


@dataclass(kw_only=True)
class AnomalyPrepared(Prepared):
    values: np.ndarray  # (N, C) the scaled signal
    labels: np.ndarray | None  # (N,) bool
    bounds: tuple[int, int, int]  # validation and test start, end
    scores: np.ndarray | None = field(default=None, repr=False)  # the model's, from evaluate, for the plot


def prepare(
    config: AnomalyDataConfig, preprocessing=None, path=None, batch_size: int = 32
) -> AnomalyPrepared:
    """The scaled signal and training windows; with a bundle and ``path``, all of it is tested."""
    raw, labels = read_signal(config, path)
    n = len(raw)
    a, b = (
        (config.window, config.window)
        if path is not None
        else (round(n * config.train), round(n * (config.train + config.validation)))
    )
    if preprocessing is None:
        scaler = make_scaler("standard").fit(raw[:a])
        preprocessing = {
            "scaler": scaler.state_dict(),
            "columns": config.columns,
            "window": config.window,
            "score": config.score,
        }
    values = scaler_from_state(preprocessing["scaler"]).transform(raw).astype(np.float32)
    train = None if path is not None else _windows(values[:a], config.window, config.stride, config.score)
    return AnomalyPrepared(
        train=train,
        validation=None
        if path is not None
        else _windows(values[a:b], config.window, config.stride, config.score),
        test=None,
        preprocessing=preprocessing,
        values=values,
        labels=labels,
        bounds=(a, b, n),
        part=f"all of {path}" if path is not None else "test part",
    )


def _windows(values: np.ndarray, window: int, stride: int, score: str) -> TensorDataset:
    """Training pairs: (window, window) to rebuild, or (window + a zeroed step, the next step) to forecast."""
    length = window if score == "reconstruction" else window + 1
    starts = np.arange(0, len(values) - length + 1, stride)
    if starts.size == 0:
        raise DataError(f"a part of {len(values)} rows holds no window of {length}: lower data.window")
    x = np.stack([values[s : s + length] for s in starts])  # (S, length, C)
    if score == "reconstruction":
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(x))
    targets = x[:, -1:].copy()  # (S, 1, C)
    x[:, -1] = 0.0  # the step to forecast is unknown
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(targets))


@torch.no_grad()
def model_scores(model: torch.nn.Module, values: np.ndarray, window: int, score: str) -> np.ndarray:
    """(N,) raw scores of every step (NaN before the first scored step): module docs."""
    model.eval()
    device = next(model.parameters()).device
    n = len(values)
    out = np.full(n, np.nan)
    if score == "forecast":
        targets = np.arange(window, n)
        x = np.stack([values[t - window : t + 1] for t in targets]).copy()
        x[:, -1] = 0.0
        for chunk in np.array_split(np.arange(len(targets)), max(1, len(targets) // 512)):
            predicted = model.predict(torch.from_numpy(x[chunk]).to(device)).cpu().numpy()[:, 0]  # (S, C)
            out[targets[chunk]] = ((predicted - values[targets[chunk]]) ** 2).mean(-1)
        return out
    starts = np.unique(np.concatenate([np.arange(0, n - window + 1, max(1, window // 4)), [n - window]]))
    total, count = np.zeros(n), np.zeros(n)
    for chunk in np.array_split(starts, max(1, len(starts) // 256)):
        x = torch.from_numpy(np.stack([values[s : s + window] for s in chunk])).to(device)
        errors = model.predict(x).cpu().numpy()  # (S, window)
        for s, e in zip(chunk, errors, strict=True):
            total[s : s + window] += e
            count[s : s + window] += 1
    out[count > 0] = total[count > 0] / count[count > 0]
    return out


def detector_scores(model: torch.nn.Module, values: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """A trained detector's scores of ``values`` (N, C), smoothed as its decision says."""
    raw = model_scores(model, values, preprocessing["window"], preprocessing["score"])
    return smooth(raw, preprocessing["decision"].get("smooth", 0))


def zscore_scores(values: np.ndarray) -> np.ndarray:
    """The largest |z| over channels: ``values`` are already scaled by the training part's statistics."""
    return np.abs(values).max(-1).astype(np.float64)


def isolation_forest_scores(values: np.ndarray, a: int, window: int, seed: int = 0) -> np.ndarray:
    """scikit-learn's IsolationForest on windows of ``window`` lagged values, fitted on the training part."""
    try:
        from sklearn.ensemble import IsolationForest
    except ImportError:
        raise DataError(
            "the IsolationForest baseline needs scikit-learn: pip install 'rnnkit[anomaly]'"
        ) from None
    lags = np.lib.stride_tricks.sliding_window_view(values, window, axis=0).reshape(
        len(values) - window + 1, -1
    )
    forest = IsolationForest(random_state=seed).fit(lags[: max(1, a - window + 1)])
    out = np.full(len(values), np.nan)
    out[window - 1 :] = -forest.score_samples(lags)
    return out


def decide(scores: np.ndarray, prepared: AnomalyPrepared, config: dict[str, Any]) -> dict[str, Any]:
    """The scale and threshold fitted on the validation part's scores (module docs)."""
    a, b, _ = prepared.bounds
    part = scores[a:b]
    part = part[np.isfinite(part)]
    scale = robust_scale(part)
    z = normalise(part, scale)
    if config["threshold"] == "quantile":
        threshold = quantile_threshold(z, config["quantile"])
    elif config["threshold"] == "iqr":
        threshold = iqr_threshold(z, config["iqr_k"])
    else:
        if prepared.labels is None:
            raise DataError("data.threshold best_f1 needs labels (data.label_column) in the validation part")
        labels = prepared.labels[a:b][np.isfinite(scores[a:b])]
        if not labels.any():
            raise DataError(
                f"data.threshold best_f1 needs labelled anomalies in the validation part (rows {a} to "
                f"{b - 1}), which has none: use quantile or iqr, or change data.train and data.validation"
            )
        threshold = best_f1_threshold(z, labels)
    return {
        "median": scale[0],
        "iqr": scale[1],
        "threshold": threshold,
        "merge_gap": config["merge_gap"],
        "smooth": config.get("smooth", 0),
    }


def flag(scores: np.ndarray, decision: dict[str, Any]) -> np.ndarray:
    z = normalise(np.nan_to_num(scores, nan=-np.inf), (decision["median"], decision["iqr"]))
    flags = z > decision["threshold"]
    return merge_gaps(flags, decision["merge_gap"]) if decision["merge_gap"] else flags


def evaluate(model: torch.nn.Module, prepared: AnomalyPrepared) -> dict[str, Any]:
    pre = prepared.preprocessing
    a, b, n = prepared.bounds
    fitting = "decision" not in pre  # a training run: fit the decision on the validation part
    window, values = pre["window"], prepared.values
    steps = pre["thresholds"]["smooth"] if fitting else pre["decision"].get("smooth", 0)
    scores = {"model": smooth(model_scores(model, values, window, pre["score"]), steps)}
    prepared.scores = scores["model"]
    if fitting:
        pre["decision"] = decide(scores["model"], prepared, pre["thresholds"])
    results: dict[str, Any] = {
        "part": prepared.part,
        "length": n - b,
        "skipped": {},
        "decision": pre["decision"],
    }
    labels = prepared.labels
    if labels is None:
        flags = flag(scores["model"], pre["decision"])[b:]
        results["flagged_events"] = len(events(flags))
        return results
    results["events"] = len(events(labels[b:]))
    if fitting:
        scores["zscore"] = smooth(zscore_scores(values), steps)
        try:
            scores["isolation_forest"] = smooth(isolation_forest_scores(values, a, window), steps)
        except DataError as error:
            results["skipped"]["isolation_forest"] = str(error)
    for who, s in scores.items():
        decision = pre["decision"] if who == "model" else decide(s, prepared, pre["thresholds"])
        results[who] = detection_metrics(flag(s, decision)[b:], labels[b:])
    return results


def metrics_table(results: dict[str, Any]) -> str:
    names = {"model": "model", "zscore": "z-score", "isolation_forest": "IsolationForest (lagged windows)"}
    d = results["decision"]
    lines = [
        f"{results['part']}: {results['length']} steps, {results.get('events', 'no')} labelled event(s); "
        f"threshold {d['threshold']:.3g} (scores in IQRs of the clean part from its median {d['median']:.3g})"
    ]
    lines += [f"  ({names[who]} skipped: {why})" for who, why in results.get("skipped", {}).items()]
    if "events" not in results:
        lines.append(f"  no labels: {results['flagged_events']} flagged event(s)")
        return "\n".join(lines)
    lines.append(f"  {'':<34}{'point P':>8}{'R':>7}{'F1':>7}{'event P':>9}{'R':>7}{'F1':>7}{'adj. F1':>9}")
    for key, label in names.items():
        if key in results:
            p, e, adj = results[key]["point"], results[key]["event"], results[key]["point_adjusted"]
            lines.append(
                f"  {label:<34}{p['precision']:>8.3f}{p['recall']:>7.3f}{p['f1']:>7.3f}"
                f"{e['precision']:>9.3f}{e['recall']:>7.3f}{e['f1']:>7.3f}{adj['f1']:>9.3f}"
            )
    lines.append("  (adj. F1: point-adjusted, which counts a whole event once one step of it is flagged)")
    return "\n".join(lines)


class AnomalyTask(Task[AnomalyDataConfig, AnomalyPrepared]):
    """Score every step of a signal and flag the anomalous ones."""

    name = "anomaly"
    data_config = AnomalyDataConfig
    default_model = "autoencoder"
    preprocessing_keys = ("scaler", "columns", "window", "score", "decision")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> AnomalyPrepared:
        prepared = prepare(config, preprocessing, path, batch_size)
        prepared.preprocessing.setdefault(
            "thresholds",
            {k: getattr(config, k) for k in ("threshold", "quantile", "iqr_k", "merge_gap", "smooth")},
        )
        return prepared

    def model_name(self, config) -> str:
        """The autoencoder for reconstruction scores, the forecaster for forecast scores."""
        return MODELS[config.score]

    def model_keys(self, config, prepared=None) -> ModelKeys:
        """The model the score needs, and its sizes."""
        C, name = len(config.columns), MODELS[config.score]
        if config.score == "reconstruction":
            return ModelKeys({"name": name, "input_size": C})
        sizes = {"lookback": config.window, "horizon": 1, "output_size": C, "num_past": 0, "num_known": 0}
        return ModelKeys({"name": name, **sizes})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        from rnnkit import plots

        pre, b = prepared.preprocessing, prepared.bounds[1]
        scores = prepared.scores
        if scores is None:
            scores = detector_scores(model, prepared.values, pre)
        flags = flag(scores, pre["decision"])
        z = normalise(scores, (pre["decision"]["median"], pre["decision"]["iqr"]))
        labelled = [] if prepared.labels is None else events(prepared.labels[b:])
        path = out_dir / "anomalies.png"
        return [
            plots.plot_anomalies(
                prepared.values[b:, 0],
                z[b:],
                pre["decision"]["threshold"],
                events(flags[b:]),
                labelled,
                path,
                offset=b,
            )
        ]

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.anomaly_use import AnomalyPredictor

        return AnomalyPredictor(self, bundle)


register_task(AnomalyTask())
