"""Using a trained recording classifier: a label and class probabilities for each recording.

    predictor = rnnkit.load("runs/basic_motions/bundle")
    predictor.predict(recording)                 # one (T, C) array -> {'label': ..., 'probability': ..., ...}
    predictor.predict([rec_a, rec_b])            # a list of arrays, any lengths
    predictor.predict(Path("new.ts"))            # a .ts (labels, if any, ignored), .npz or long table

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

    verbs = (*Predictor.verbs, "predict")

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
        channels = len(self.preprocessing["channels"])
        for i, s in enumerate(sequences):
            if s.ndim != 2 or s.shape[1] != channels or len(s) == 0:
                raise ShapeError(
                    f"recording {i} has shape {s.shape}; this model reads (T >= 1, {channels}) arrays "
                    f"(steps by channels {self.preprocessing['channels']})"
                )
        scaler = scaler_from_state(self.preprocessing["scaler"])
        labels = Labels.from_state(self.preprocessing["labels"])
        scaled = [scaler.transform(s.astype(np.float64)).astype(np.float32) for s in sequences]
        self.model.eval()
        probs = probabilities(
            self.model, RecordingDataset(scaled, torch.zeros(len(scaled), dtype=torch.long))
        )
        results = []
        for p in probs:
            per_class = [1 - float(p), float(p)] if p.dim() == 0 else p.tolist()
            scores = dict(zip(labels.classes, per_class, strict=True))
            best = max(scores, key=scores.get)
            results.append({"label": best, "probability": scores[best], "probabilities": scores})
        return results
