"""Using a trained language model: continue a prompt, token by token with the state carried.

    predictor = rnnkit.load("runs/char_lm/bundle")
    predictor.generate("And God said", max_tokens=200, top_p=0.9, seed=1)
    predictor.generate("And God said", max_tokens=50, beam_width=5)   # the most likely continuation
    predictor.generate("The", condition=2)              # a model with num_conditions: class 2's text
    predictor.generate("The", condition=[0.1, 0.7])     # a model with condition_size 2: from a vector

The prompt is read once; the continuation never holds ``<unk>`` (or padding and begin symbols):
those ids are never chosen. A prompt with characters or words outside the vocabulary still runs
(they are read as ``<unk>``), with a warning that names them.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnkit.data.vocab import TextCodec
from rnnkit.decoding import generate_text
from rnnkit.errors import ConfigError, ShapeError, warn_user
from rnnkit.tasks import Predictor


class LanguageModelPredictor(Predictor):
    """A trained language model: ``generate``."""

    verbs = (*Predictor.verbs, "generate")

    def __init__(self, task, bundle) -> None:
        super().__init__(task, bundle)
        self.codec = TextCodec.from_state(self.preprocessing["codec"])

    def generate(
        self,
        prompt: str,
        max_tokens: int = 50,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        beam_width: int | None = None,
        condition: Any = None,
    ) -> str:
        """The prompt and up to ``max_tokens`` tokens after it, ending early at ``<eos>``: greedy, or
        sampled with ``temperature``, ``top_k`` and ``top_p`` (the same ``seed`` gives the same
        text), or with ``beam_width`` k the most likely continuation a beam of k finds (the sampling
        options must then keep their defaults). A conditioned model (trained with ``num_conditions``
        or ``condition_size``) needs its ``condition``: a class id, or a vector of its features."""
        unknown = list(dict.fromkeys(self.codec.unknown(prompt)))
        if unknown:
            names = ", ".join(repr(t) for t in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            warn_user(
                f"the prompt holds {len(unknown)} token(s) this model's vocabulary does not know "
                f"({names}); it reads each as <unk>"
            )
        vocab = self.codec.vocab
        text = generate_text(
            self.model,
            self.codec,
            prompt,
            max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
            seed=seed,
            eos_id=vocab.eos_id,
            banned=(vocab.pad_id, vocab.unk_id, vocab.bos_id),
            beam_width=beam_width,
            condition=self._condition(condition),
        )
        joiner = " " if self.codec.level == "word" and text and not text[0].isspace() else ""
        return prompt + joiner + text

    def _condition(self, condition: Any) -> torch.Tensor | None:
        """One row's condition as the model reads it: (1,) class id or (1, C) features."""
        config = self.model.config
        if condition is None:
            if config.conditioned:
                what = (
                    "a class id" if config.num_conditions else f"a vector of {config.condition_size} numbers"
                )
                raise ConfigError(f"this language model is conditioned: give condition=..., {what}")
            return None
        if config.num_conditions is not None:
            if isinstance(condition, bool) or not isinstance(condition, int):
                raise ConfigError(
                    f"condition must be a class id, an integer in [0, {config.num_conditions}); "
                    f"got {condition!r}"
                )
            return torch.tensor([condition])
        try:
            vector = torch.as_tensor(condition, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ShapeError(
                f"condition must be a vector of numbers; could not read {condition!r}: {error}"
            ) from None
        return vector.reshape(1, -1) if vector.dim() == 1 else vector
