"""Using a trained CTC model: the labels spoken in feature sequences.

recogniser = rnnkit.load("runs/digits/bundle")
recogniser.transcribe(mfcc)                  # one (T, 13) array -> "3 5 1"
recogniser.transcribe([mfcc_a, mfcc_b])      # a list -> a list of strings
recogniser.transcribe(mfcc, beam_width=8)    # prefix beam search instead of the best path
session = recogniser.session()               # a unidirectional model: frames as they arrive
session.feed(first_frames)                   # {"frames_read": 40, "transcript": "3 5"} (best path so far)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rnnkit.data import scaler_from_state
from rnnkit.decoding.ctc import collapse
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.tasks import Predictor
from rnnkit.tasks.speech import UtteranceDataset, transcriptions


class SpeechPredictor(Predictor):
    """A trained CTC model: ``transcribe`` (and ``predict``, the same) feature sequences."""

    verbs = (*Predictor.verbs, "transcribe", "predict", "session")

    def session(self, condition: Any = None) -> SpeechSession:
        """Frames transcribed as they arrive, the state carried (unidirectional models only)."""
        if condition is not None:
            raise ConfigError("a CTC model takes no condition")
        if self.model.config.bidirectional:
            self.model.read_on(torch.zeros(1, 1, self.model.config.input_size))  # says why it cannot
        return SpeechSession(self)

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


class SpeechSession:
    """Feature frames fed as they arrive, (T, D) each time, read once with the state carried; after
    each feed, the best path's labels so far (greedy CTC decoding: equal to ``transcribe`` of all
    the frames fed, greedy)."""

    def __init__(self, predictor: SpeechPredictor) -> None:
        self.predictor, self.model = predictor, predictor.model
        self.scaler = scaler_from_state(predictor.preprocessing["scaler"])
        self.alphabet = predictor.preprocessing["alphabet"]
        self.state: Any = None
        self.path: list[int] = []  # the best class of every frame so far
        self.frames_read = 0

    def feed(self, frames: np.ndarray, top: int | None = None) -> dict[str, Any]:
        """Read ``frames`` (T, D) after everything fed before (``top`` is ignored)."""
        array = np.asarray(frames, dtype=np.float64)
        width = len(self.predictor.preprocessing["features"])
        if array.ndim != 2 or array.shape[1] != width or len(array) == 0:
            raise ShapeError(f"frames have shape {array.shape}; this model reads (T >= 1, {width}) features")
        x = torch.from_numpy(self.scaler.transform(array).astype(np.float32))[None]
        log_probs, self.state = self.model.read_on(x.to(next(self.model.parameters()).device), self.state)
        self.path += log_probs[0].argmax(-1).tolist()
        self.frames_read += len(array)
        labels = [self.alphabet[c - 1] for c in collapse(self.path)]  # class 0 is the blank
        return {"frames_read": self.frames_read, "transcript": " ".join(labels)}
