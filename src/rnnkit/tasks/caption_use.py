"""Using a trained captioner: a short text for each feature vector (or image).

    captioner = rnnkit.load("runs/digit_captions/bundle")
    captioner.caption(image)                  # an (8, 8) image or (64,) features -> "a thin one upright"
    captioner.caption(images, beam_width=4)   # (N, 8, 8) or (N, 64) -> N texts, by beam search
    captioner.caption(image, temperature=0.8, seed=1)   # sampled instead of the most likely token
    captioner.predict("more.npz")             # a file laid out as the training data -> its texts

Features are given as in the training data (raw, not standardised: the bundle's scaler does that);
a model trained on images also takes them as images (h, w), flattened row by row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data import scaler_from_state
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.tasks import Predictor
from rnnkit.tasks.caption import captions, read_examples


class CaptionPredictor(Predictor):
    """A trained captioner: ``caption`` (and ``predict``, the same) feature vectors or images."""

    verbs = (*Predictor.verbs, "caption", "predict")

    def __init__(self, task, bundle) -> None:
        super().__init__(task, bundle)
        self.codec = TextCodec.from_state(self.preprocessing["codec"])
        self.scaler = scaler_from_state(self.preprocessing["scaler"])

    def caption(
        self,
        inputs: Any,
        *,
        beam_width: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        max_tokens: int | None = None,
    ) -> str | list[str]:
        """The text of one example (features (F,) or an image (h, w)), or of each of many ((N, F),
        (N, h, w), a list of them, or a file laid out as the training data): greedy by default,
        sampled at ``temperature`` > 0 (``seed`` repeats it), or the best of a beam of ``beam_width``.
        """
        if beam_width is not None and (temperature != 0 or seed is not None):
            raise ConfigError(
                f"beam search (beam_width={beam_width}) samples nothing: drop temperature and seed, "
                "or drop beam_width to sample"
            )
        if not (isinstance(temperature, int | float) and 0 <= temperature < float("inf")):
            raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
        features, one = self._features(inputs)
        scaled = self.scaler.transform(features).astype(np.float32)
        limit = max_tokens or self.preprocessing["max_tokens"]
        texts = captions(
            self.model, scaled, self.codec, limit, beam_width=beam_width, temperature=temperature, seed=seed
        )
        return texts[0] if one else texts

    def predict(self, inputs, **options) -> list[str]:
        """``caption`` of many: a file, or arrays (a single example gives a list of one text)."""
        unknown = set(options) - {"beam_width", "temperature", "seed", "max_tokens"}
        if unknown:
            raise ConfigError(
                f"caption takes beam_width, temperature, seed and max_tokens; got {sorted(unknown)}"
            )
        texts = self.caption(inputs, **options)
        return [texts] if isinstance(texts, str) else texts

    def format(self, result: Any) -> str:
        return str(result)

    def _features(self, inputs: Any) -> tuple[np.ndarray, bool]:
        """(N, F) float64 features, and whether one example was given."""
        if isinstance(inputs, str | Path):
            return read_examples(inputs, self.data_config, texts=False).features, False
        F = self.preprocessing["features"]
        image = tuple(self.preprocessing.get("image_shape") or ())
        try:
            array = np.asarray(
                inputs.detach().cpu() if hasattr(inputs, "detach") else inputs, dtype=np.float64
            )
        except (TypeError, ValueError) as error:
            raise ShapeError(
                f"inputs must be numbers, {self._expected()}; could not read them: {error}"
            ) from None
        shapes = [(F,), *([image] if image else [])]  # of one example
        if array.shape in shapes:
            one, array = True, array.reshape(1, F)
        elif array.ndim >= 2 and array.shape[1:] in shapes and len(array):
            one, array = False, array.reshape(len(array), F)
        else:
            raise ShapeError(f"inputs have shape {array.shape}; this model reads {self._expected()}")
        if not np.isfinite(array).all():
            raise DataError("inputs hold NaN or infinity; fill them before captioning")
        return array, one

    def _expected(self) -> str:
        F, image = self.preprocessing["features"], self.preprocessing.get("image_shape")
        shapes = f"({F},) features or (N, {F})"
        if image:
            shapes += f", or images {tuple(image)} or (N, {', '.join(map(str, image))})"
        return shapes
