"""Using a trained language model: continue a prompt, token by token with the state carried.

    predictor = rnnkit.load("runs/char_lm/bundle")
    predictor.generate("And God said", max_tokens=200, top_p=0.9, seed=1)
    predictor.generate("And God said", max_tokens=50, beam_width=5)   # the most likely continuation
    predictor.generate("The", condition=2)              # a model with num_conditions: class 2's text
    predictor.generate("The", condition=[0.1, 0.7])     # a model with condition_size 2: from a vector
    for piece in predictor.stream("And God said", 50, seed=1):   # the same text, piece by piece
        print(piece, end="", flush=True)

The prompt is read once; the continuation never holds ``<unk>`` (or padding and begin symbols):
those ids are never chosen. A prompt with characters or words outside the vocabulary still runs
(they are read as ``<unk>``), with a warning that names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from rnnkit.data.vocab import TextCodec
from rnnkit.decoding import generate_text, stream
from rnnkit.errors import ConfigError, DataError, ShapeError, warn_user
from rnnkit.layers.recurrent import stack_states
from rnnkit.models.conditioning import ConditionedState
from rnnkit.tasks import Predictor


class LanguageModelPredictor(Predictor):
    """A trained language model: ``generate``."""

    verbs = (*Predictor.verbs, "generate", "stream", "session")

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

    def stream(
        self,
        prompt: str,
        max_tokens: int = 50,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        condition: Any = None,
    ) -> Iterator[str]:
        """``generate``'s continuation piece by piece as each token is drawn (joined, the pieces are
        what ``generate`` adds after the prompt for the same seed). For servers and consoles."""
        vocab = self.codec.vocab
        ids = self.codec.encode(prompt)
        if not ids:
            raise DataError(f"the prompt {prompt!r} encodes to no tokens; give a prompt with some text")
        new: list[int] = []
        said = ""
        for token in stream(
            self.model, torch.tensor(ids), max_tokens,
            temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed,
            eos_id=vocab.eos_id, banned=(vocab.pad_id, vocab.unk_id, vocab.bos_id),
            condition=self._condition(condition),
        ):  # fmt: skip
            new.append(token)
            text = self.codec.decode(new)
            if not said and text and self.codec.level == "word" and not text[0].isspace():
                text = " " + text
            if text != said:
                yield text[len(said) :] if text.startswith(said) else text
                said = text

    def session(self, condition: Any = None) -> TextSession:
        """A stream of text read piece by piece with the state carried (module docs)."""
        return TextSession(self, self._condition(condition))

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


class TextSession:
    """Text fed in pieces, each read once with the state carried on: after each piece, the next
    token's likeliest choices. Fed "The c" then "at", it answers as one read of "The cat" would.

        session = predictor.session()
        session.feed("And God", top=3)   # {"tokens_read": 7, "next": [{"token": " ", ...}, ...]}
        session.feed(" said")

    A short piece (up to ``STEP_TOKENS`` tokens) is read token by token through one
    :class:`~rnnkit.Streamer` per layer (the native step: weights packed once, nothing allocated);
    a longer one in one forward pass of the model. The two hand the state to each other, so the
    answers are the same either way (tested).
    """

    STEP_TOKENS = 32

    def __init__(self, predictor: LanguageModelPredictor, condition: torch.Tensor | None) -> None:
        self.predictor, self.condition = predictor, condition
        self.model = predictor.model
        self.state: Any = None  # the model's state, when the last piece went through the model
        self.streamers = _streamers(self.model)  # None: the model's layers cannot be stepped
        self.stepping = False  # whether the streamers hold the current state
        self.tokens_read = 0

    @torch.inference_mode()
    def feed(self, text: str, top: int = 5) -> dict[str, Any]:
        """Read ``text`` after everything fed before; the ``top`` likeliest next tokens."""
        codec, model = self.predictor.codec, self.model
        ids = codec.encode(text)
        if not ids:
            raise DataError(f"{text!r} encodes to no tokens; feed some text")
        tokens = torch.tensor([ids], device=next(model.parameters()).device)
        if self.streamers is not None and len(ids) <= self.STEP_TOKENS:
            logits = self._step(tokens[0])
        else:
            self._leave_streamers()
            if self.state is None and self.condition is not None:
                probs, self.state = model.predict(tokens, condition=self.condition.to(tokens.device))
            else:
                probs, self.state = model.predict(tokens, self.state)
            logits = probs[0, -1].log()
        self.tokens_read += len(ids)
        probs = torch.softmax(logits.float(), -1)
        values, indices = probs.topk(min(top, probs.shape[-1]))
        return {
            "tokens_read": self.tokens_read,
            "next": [
                {"token": codec.decode([i]), "probability": float(p)}
                for p, i in zip(values.tolist(), indices.tolist(), strict=True)
            ],
        }

    def _step(self, ids: torch.Tensor) -> torch.Tensor:
        """Each token through the streamers; the logits (V,) after the last."""
        model, condition = self.model, None
        if not self.stepping:
            state = self.state
            if state is None and self.condition is not None:
                state = model.start(self.condition.to(ids.device))
            if isinstance(state, ConditionedState):
                state = state.layers
            for i, streamer in enumerate(self.streamers):
                streamer.reset(None if state is None else type(state)(*(f[i : i + 1] for f in state)))
            self.stepping = True
        if model.conditioning is not None and model.config.condition_inputs:
            condition = self._condition_now()
        for token in ids.tolist():
            x = model.embedding.weight[token][None]  # (1, E)
            if condition is not None:
                x = model.conditioning.inputs(x[:, None], condition)[:, 0]  # (1, 2E)
            for streamer in self.streamers:
                x = streamer.step(x)  # (1, H)
        if model.projection is not None:
            x = model.projection(x)
        return model.decoder(x)[0]  # (V,)

    def _condition_now(self) -> torch.Tensor:
        """The condition (1, 1, C) as the model's state carries it."""
        if isinstance(self.state, ConditionedState):
            return self.state.condition
        return self.model.start(self.condition).condition

    def _leave_streamers(self) -> None:
        """Hand the streamers' state back to the model's state before a forward pass."""
        if not self.stepping:
            return
        layers = stack_states([streamer.state for streamer in self.streamers])
        if self.model.conditioning is not None:
            layers = ConditionedState(layers, self._condition_now())
        self.state, self.stepping = layers, False


def _streamers(model) -> list | None:
    """One Streamer per layer of the language model, or None where a layer is not an rnnkit RNN,
    LSTM or GRU (the minimal cells) or its weights are on another device than the CPU."""
    from rnnkit.layers import GRU, LSTM, RNN, Streamer

    if not all(isinstance(layer, RNN | LSTM | GRU) for layer in model.layers):
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    return [Streamer(layer) for layer in model.layers]
