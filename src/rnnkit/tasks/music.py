"""Compose polyphonic music: a recurrent model of piano rolls, judged by its likelihood of new pieces.

The data are pieces as piano rolls (:mod:`rnnkit.data.music`: a step every ``1 /
steps_per_quarter`` quarter notes, one column per piano key): the 371 four-part chorales of
music21's corpus (``dataset: bach_chorales``; ``pip install 'rnnkit[music]'``; parsed once and
cached), or the user's own scores (``path``: a folder of MIDI or MusicXML files, one score, or an
``.npz`` of rolls). With ``transpose: c`` every piece is moved to C major or C minor first, as the
JSB Chorales benchmark was prepared. Pieces are split into training, validation and test parts by
piece (seeded), so no piece is in two parts.

The model (:class:`~rnnkit.models.PianoRollModel`) reads each piece from a silent frame onwards and
gives the distribution of the next step's frame (keys independent, or a NADE over them). The test
table gives the negative log-likelihood per step (nats; lower is better) and the frame accuracy of
Bay et al. (2009), TP / (TP + FP + FN) of the likeliest next frame at each step (keys on above one
half), beside two baselines fitted on the training part: a frame-independent note model (each key
on with its training frequency, whatever came before) and a per-key Markov chain (each key's
probability given whether it sounded at the step before). After training the run writes
``piano_roll.png`` (a test piece, the model's likeliest next frames for it, and a sampled piece)
and two sampled pieces as ``sample_1.mid`` and ``sample_2.mid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset

from rnnkit.config import Config
from rnnkit.data.batch import Batch
from rnnkit.data.music import KEYS, Pieces, bach_chorales, read_pieces
from rnnkit.errors import DataError
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

SAMPLES = 2  # MIDI files a run writes


class MusicDataConfig(Config):
    """Where the pieces are, how they are sampled and split (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    dataset: Literal["bach_chorales"] | None = Field(None, description="music21's 371 Bach chorales")
    path: str | None = Field(
        None, description="a folder of MIDI/MusicXML files, one score, or an .npz of rolls"
    )
    steps_per_quarter: int = Field(1, ge=1, le=8, description="time steps a quarter note (1: JSB's)")
    transpose: Literal["c", "none"] = Field("c", description="c: every piece to C major or C minor")
    test: float = Field(0.2, gt=0, lt=1, description="share of pieces for testing")
    validation: float = Field(0.1, ge=0, lt=1, description="share of the rest for early stopping")
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> MusicDataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give path or dataset, one of them")
        return self


def read_music(config: MusicDataConfig, path: str | Path | None = None) -> Pieces:
    if path is None and config.dataset == "bach_chorales":
        return bach_chorales(config.steps_per_quarter, config.transpose)
    return read_pieces(path or config.path, config.steps_per_quarter, config.transpose)


class PieceDataset(Dataset):
    """Each piece as (inputs, targets): the roll after a silent frame, and the roll (T, 88) float."""

    def __init__(self, rolls: list[np.ndarray]) -> None:
        self.rolls = [torch.from_numpy(np.asarray(r, dtype=np.float32)) for r in rolls]
        self.lengths = np.array([len(r) for r in rolls], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rolls)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        roll = self.rolls[index]
        return torch.cat([roll.new_zeros(1, roll.shape[1]), roll[:-1]]), roll


def pad_pieces(examples) -> Batch:
    """Inputs and targets padded with silence (B, T, 88), and the steps of each piece (B,)."""
    inputs, targets = zip(*examples, strict=True)
    pad = torch.nn.utils.rnn.pad_sequence
    lengths = torch.tensor([len(x) for x in inputs])
    return Batch(pad(list(inputs), batch_first=True), pad(list(targets), batch_first=True), lengths)


@dataclass(kw_only=True)
class MusicPrepared(Prepared):
    names: list[str]  # the test pieces'


def baselines(rolls: list[np.ndarray]) -> dict[str, list]:
    """The two baselines' probabilities, fitted on ``rolls`` with add-one smoothing: each key's
    frequency, and each key's frequency after a step it was off / on (a silent step before the first)."""
    frames = np.concatenate(rolls).astype(np.float64)  # (N, 88)
    before = np.concatenate([np.concatenate([np.zeros((1, KEYS)), r[:-1]]) for r in rolls])  # (N, 88)
    frequency = (frames.sum(0) + 1) / (len(frames) + 2)
    after = [((frames * (before == b)).sum(0) + 1) / ((before == b).sum(0) + 2) for b in (0, 1)]
    return {"frequency": frequency.tolist(), "after_off": after[0].tolist(), "after_on": after[1].tolist()}


def prepare(config: MusicDataConfig, preprocessing=None, path=None, batch_size: int = 32) -> MusicPrepared:
    pieces = read_music(config, path)
    if not len(pieces):
        raise DataError("no pieces to read")
    if path is not None:
        parts = {"train": pieces.subset([]), "validation": pieces.subset([]), "test": pieces}
    else:
        order = np.random.default_rng(config.split_seed).permutation(len(pieces))
        n_test = max(1, round(config.test * len(pieces)))
        n_val = round(config.validation * (len(pieces) - n_test))
        if len(pieces) - n_test - n_val < 1:
            raise DataError(f"{len(pieces)} pieces leave none for training: give more, or lower data.test")
        parts = {
            "test": pieces.subset(order[:n_test]),
            "validation": pieces.subset(order[n_test : n_test + n_val]),
            "train": pieces.subset(order[n_test + n_val :]),
        }
    if preprocessing is None:
        preprocessing = {
            "steps_per_quarter": config.steps_per_quarter,
            "transpose": config.transpose,
            "baselines": baselines(parts["train"].rolls),
            "median_steps": int(np.median([len(r) for r in parts["train"].rolls])),
        }
    datasets = {name: PieceDataset(part.rolls) if len(part) else None for name, part in parts.items()}
    return MusicPrepared(
        train=datasets["train"], validation=datasets["validation"], test=datasets["test"],
        preprocessing=preprocessing, collate=pad_pieces, names=parts["test"].names,
        part=f"all of {path}" if path is not None else "test part",
    )  # fmt: skip


@torch.no_grad()
def judge_model(model: torch.nn.Module, dataset: PieceDataset) -> dict[str, float]:
    """The model's negative log-likelihood per step (nats) of the pieces and its frame accuracy (the
    likeliest next frame at each step, given the true steps before, against the true one)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, counts = 0.0, np.zeros(3)
    try:
        for batch in DataLoader(dataset, batch_size=32, collate_fn=pad_pieces):
            inputs, targets = batch.inputs.to(device), batch.targets.to(device)
            nll += float(model.frame_nll(inputs, targets, batch.lengths)[0].sum())
            guess = model.guess(inputs, batch.lengths).cpu()
            real = torch.arange(guess.shape[1])[None, :] < batch.lengths[:, None]  # (B, T)
            counts += _counts(guess[real].numpy(), batch.targets[real].bool().numpy())
    finally:
        model.train(was_training)
    return {"nll": nll / int(dataset.lengths.sum()), "frame_accuracy": _accuracy(counts)}


def _counts(guess: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """True positives, keys guessed on, keys truly on."""
    return np.array([(guess & truth).sum(), guess.sum(), truth.sum()], dtype=float)


def _accuracy(counts: np.ndarray) -> float:
    """Bay et al.'s frame accuracy TP / (TP + FP + FN) from :func:`_counts`."""
    hits, guessed, true = counts
    return float(hits / max(1.0, guessed + true - hits))


def _judge(probs: list[np.ndarray], rolls: list[np.ndarray]) -> dict[str, float]:
    """A baseline's negative log-likelihood per step (nats) and frame accuracy (on above one half)."""
    p, x = np.concatenate(probs), np.concatenate(rolls).astype(bool)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    nll = -(np.log(p[x]).sum() + np.log1p(-p[~x]).sum()) / len(x)
    return {"nll": float(nll), "frame_accuracy": _accuracy(_counts(p > 0.5, x))}


def baseline_probabilities(fitted: dict[str, list], rolls: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    frequency = np.asarray(fitted["frequency"])
    off, on = np.asarray(fitted["after_off"]), np.asarray(fitted["after_on"])
    markov = []
    for roll in rolls:
        before = np.concatenate([np.zeros((1, KEYS), bool), roll[:-1].astype(bool)])
        markov.append(np.where(before, on, off))
    return {
        "per-key Markov": markov,
        "frame-independent": [np.broadcast_to(frequency, roll.shape) for roll in rolls],
    }


def evaluate(model: torch.nn.Module, prepared: MusicPrepared) -> dict[str, Any]:
    rolls = [r.numpy() for r in prepared.test.rolls]
    pre = prepared.preprocessing
    results: dict[str, Any] = {
        "part": prepared.part, "pieces": len(rolls), "time_steps": int(sum(len(r) for r in rolls)),
        "steps_per_quarter": pre["steps_per_quarter"],
        "model": judge_model(model, prepared.test),
    }  # fmt: skip
    for name, probs in baseline_probabilities(pre["baselines"], rolls).items():
        results[name] = _judge(probs, rolls)
    return results


def metrics_table(results: dict[str, Any]) -> str:
    step = {1: "a quarter note", 2: "an eighth note", 4: "a sixteenth note"}.get(
        results["steps_per_quarter"], f"1/{results['steps_per_quarter']} of a quarter note"
    )
    lines = [
        f"{results['part']}: {results['pieces']} piece{'s' * (results['pieces'] != 1)}, "
        f"{results['time_steps']} steps (a step is {step})",
        f"  {'':<22}{'NLL/step (nats)':>17}{'frame acc.':>12}",
    ]
    for name in ("model", "per-key Markov", "frame-independent"):
        value = results[name]
        lines.append(f"  {name:<22}{value['nll']:>17.3f}{value['frame_accuracy']:>12.3f}")
    return "\n".join(lines)


class MusicTask(Task[MusicDataConfig, MusicPrepared]):
    """Model piano rolls note by note and compose new pieces."""

    name = "music"
    data_config = MusicDataConfig
    default_model = "piano_roll"
    preprocessing_keys = ("steps_per_quarter", "transpose", "baselines", "median_steps")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> MusicPrepared:
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        return ModelKeys({"num_keys": KEYS})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """piano_roll.png: the first test piece, the model's likeliest next frame at each step of it,
        and a piece sampled from silence as long; and ``sample_1.mid``, ``sample_2.mid``: pieces of
        the training part's median length sampled with seeds 1 and 2."""
        from rnnkit import plots
        from rnnkit.data.music import write_midi

        pre = prepared.preprocessing
        inputs, roll = prepared.test[0]
        guess = model.guess(inputs[None].to(next(model.parameters()).device))[0].cpu().numpy()
        sampled = sample(model, len(roll), seed=0)
        written = [
            plots.plot_piano_rolls(
                {
                    f"test piece {prepared.names[0]}": roll.numpy(),
                    "the model's likeliest frame at each step, given the true steps before": guess,
                    "a piece the model composed (sampled from silence, seed 0)": sampled,
                },
                out_dir / "piano_roll.png",
                pre["steps_per_quarter"],
            )
        ]
        for seed in range(1, SAMPLES + 1):
            piece = sample(model, pre["median_steps"], seed=seed)
            written.append(write_midi(piece, out_dir / f"sample_{seed}.mid", pre["steps_per_quarter"]))
        return written

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.music_use import MusicPredictor

        return MusicPredictor(self, bundle)


def sample(
    model, steps: int, seed: int | None = None, primer=None, temperature=1.0, greedy=False
) -> np.ndarray:
    """One piece of ``steps`` steps (steps, 88) bool from the model (after ``primer``, a roll)."""
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    primed = None if primer is None else torch.as_tensor(np.asarray(primer, dtype=np.float32))[None]
    rolls = model.sample(steps, 1, primed, temperature, greedy, generator)
    return rolls[0].cpu().numpy()


register_task(MusicTask())
