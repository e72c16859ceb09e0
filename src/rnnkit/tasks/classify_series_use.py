"""Using a trained recording classifier: a label and class probabilities for each recording.

    predictor = rnnkit.load("runs/basic_motions/bundle")
    predictor.predict(recording)                 # one (T, C) array -> {'label': ..., 'probability': ..., ...}
    predictor.predict([rec_a, rec_b])            # a list of arrays, any lengths
    predictor.predict(Path("new.ts"))            # a .ts (labels, if any, ignored), .npz or long table
    session = predictor.session()                # a live recording, read as it arrives
    session.feed(first_rows)                     # (T, C) -> the label of everything so far

Recordings are standardised with the training part's channel statistics kept in the bundle; a
recording must have the channels the model was trained on, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data import Labels, scaler_from_state
from rnnkit.data.recordings import read_recordings
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.tasks import Predictor
from rnnkit.tasks.classify_series import RecordingDataset, probabilities


class RecordingsPredictor(Predictor):
    """A trained recording classifier: ``predict`` labels recordings."""

    verbs = (*Predictor.verbs, "predict", "session")

    def session(self, condition: Any = None) -> RecordingSession:
        """A live recording read as its steps arrive, the recurrence's state carried: after each
        feed, the label of everything so far (models that read forward only, without a
        convolutional front end or chunks)."""
        if condition is not None:
            raise ConfigError("a recording classifier takes no condition")
        model = self.model
        if model.config.bidirectional or model.conv is not None or model.upper is not None:
            channels = len(self.preprocessing["channels"])
            model.read_on(torch.zeros(1, 1, channels))  # raises the ConfigError that says why
        return RecordingSession(self)

    def predict(self, inputs: np.ndarray | Sequence[np.ndarray] | Path, **options) -> dict | list[dict]:
        """The label of one recording (a dict for one (T, C) array), or of each in a list or file."""
        if options:
            raise ConfigError(f"a recording classifier's predict takes no options; got {sorted(options)}")
        if isinstance(inputs, str | Path):
            sequences = read_recordings(inputs, labelled=False, **self.preprocessing["columns"]).sequences
            return self._labels(sequences)
        if isinstance(inputs, np.ndarray | torch.Tensor) and np.ndim(inputs) == 2:
            return self._labels([np.asarray(inputs)])[0]
        return self._labels([np.asarray(x) for x in inputs])

    def format(self, result: dict[str, Any]) -> str:
        """label and probability, tab-separated."""
        return f"{result['label']}\t{result['probability']:.3f}"

    def _labels(self, sequences: list[np.ndarray]) -> list[dict[str, Any]]:
        self._check(sequences)
        scaler = scaler_from_state(self.preprocessing["scaler"])
        labels = Labels.from_state(self.preprocessing["labels"])
        scaled = [scaler.transform(s.astype(np.float64)).astype(np.float32) for s in sequences]
        self.model.eval()
        probs = probabilities(
            self.model, RecordingDataset(scaled, torch.zeros(len(scaled), dtype=torch.long))
        )
        return [_labelled(p, labels) for p in probs]

    def _check(self, sequences: list[np.ndarray]) -> None:
        channels = len(self.preprocessing["channels"])
        for i, s in enumerate(sequences):
            if s.ndim != 2 or s.shape[1] != channels or len(s) == 0:
                raise ShapeError(
                    f"recording {i} has shape {s.shape}; this model reads (T >= 1, {channels}) arrays "
                    f"(steps by channels {self.preprocessing['channels']})"
                )


def _labelled(p: torch.Tensor, labels: Labels) -> dict[str, Any]:
    """The label, its probability and every class's, from () P(class 1) (binary) or (C,)."""
    per_class = [1 - float(p), float(p)] if p.dim() == 0 else p.tolist()
    scores = dict(zip(labels.classes, per_class, strict=True))
    best = max(scores, key=scores.get)
    return {"label": best, "probability": scores[best], "probabilities": scores}


class RecordingSession:
    """A recording fed in runs of steps (T, C), each read once with the state carried on; after
    each, the label of the whole recording so far, as ``predict`` gives for it whole."""

    def __init__(self, predictor: RecordingsPredictor) -> None:
        self.predictor, self.model = predictor, predictor.model
        self.scaler = scaler_from_state(predictor.preprocessing["scaler"])
        self.labels = Labels.from_state(predictor.preprocessing["labels"])
        self.read: Any = None
        self.steps_read = 0

    def feed(self, steps: np.ndarray, top: int | None = None) -> dict[str, Any]:
        """Read ``steps`` (T, C) after everything fed before (``top`` is ignored)."""
        array = np.asarray(steps, dtype=np.float64)
        self.predictor._check([array])
        x = torch.from_numpy(self.scaler.transform(array).astype(np.float32))[None]
        output, self.read = self.model.read_on(x.to(next(self.model.parameters()).device), self.read)
        logits = output.logits[0].float().cpu()
        head = self.model.config.head
        probs = torch.softmax(logits, -1) if head == "multiclass" else torch.sigmoid(logits)
        self.steps_read += len(array)
        return {**_labelled(probs, self.labels), "steps_read": self.steps_read}
