"""Using a trained CTC model: the labels spoken in feature sequences.

recogniser = rnnkit.load("runs/digits/bundle")
recogniser.transcribe(mfcc)                  # one (T, 13) array -> "3 5 1"
recogniser.transcribe([mfcc_a, mfcc_b])      # a list -> a list of strings
recogniser.transcribe(mfcc, beam_width=8)    # prefix beam search instead of the best path
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rnnkit.data import scaler_from_state
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.tasks import Predictor
from rnnkit.tasks.speech import UtteranceDataset, transcriptions


class SpeechPredictor(Predictor):
    """A trained CTC model: ``transcribe`` (and ``predict``, the same) feature sequences."""

    verbs = (*Predictor.verbs, "transcribe", "predict")

    def transcribe(
        self, features: np.ndarray | Sequence[np.ndarray], beam_width: int | None = None
    ) -> str | list[str]:
        """The labels of one (T, D) array as a space-separated string, or of each array of a list."""
        one = isinstance(features, np.ndarray | torch.Tensor) and np.ndim(features) == 2
        arrays = [np.asarray(features)] if one else [np.asarray(f) for f in features]
        width = len(self.preprocessing["features"])
        for i, a in enumerate(arrays):
            if a.ndim != 2 or a.shape[1] != width or len(a) == 0:
                raise ShapeError(
                    f"utterance {i} has shape {a.shape}; this model reads (T >= 1, {width}) features"
                )
        scaler = scaler_from_state(self.preprocessing["scaler"])
        scaled = [scaler.transform(a.astype(np.float64)).astype(np.float32) for a in arrays]
        dataset = UtteranceDataset(scaled, [[] for _ in scaled])
        texts = [
            " ".join(row)
            for row in transcriptions(self.model, dataset, self.preprocessing["alphabet"], beam_width)
        ]
        return texts[0] if one else texts

    def predict(self, inputs, **options) -> Any:
        unknown = set(options) - {"beam_width"}
        if unknown:
            raise ConfigError(f"transcribe takes beam_width only; got {sorted(unknown)}")
        return self.transcribe(inputs, **options)
