"""Using a trained piano-roll model: compose pieces, continue a primer, score a piece.

composer = rnnkit.load("runs/bach_chorales/bundle")
roll = composer.compose(steps=64, seed=0)                     # (64, 88) bool: key k on at step t
composer.write_midi(roll, "new_chorale.mid")
roll = composer.compose(steps=32, primer="opening.mid")       # continue a piece (primer not included)
composer.score("chorale.mid")                                  # NLL per step, nats: lower is likelier
session = composer.session()                                   # a performance followed as it is played
session.feed(first_steps)                                      # (T, 88) -> NLL so far, next frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.music import check_roll, count_notes, read_score, write_midi
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.music import PieceDataset, judge_model, sample


class MusicPredictor(Predictor):
    """A trained piano-roll model: ``compose``, ``write_midi``, ``score``; ``generate`` writes MIDI."""

    verbs = (*Predictor.verbs, "compose", "write_midi", "score", "generate", "session")

    def session(self, condition: Any = None) -> MusicSession:
        """A piece followed step by step as it is played, the state carried (nothing read twice)."""
        if condition is not None:
            raise ConfigError("a music model takes no condition")
        return MusicSession(self)

    @property
    def steps_per_quarter(self) -> int:
        return self.preprocessing["steps_per_quarter"]

    def _roll(self, piece: Any, what: str) -> np.ndarray:
        """A score file (read as the training data was: same step, same transposition) or a roll."""
        if isinstance(piece, str | Path):
            return read_score(piece, self.steps_per_quarter, self.preprocessing["transpose"])
        roll = check_roll(piece.cpu().numpy() if isinstance(piece, torch.Tensor) else piece, what)
        if not len(roll):
            raise DataError(f"{what} has no steps")
        return roll

    def compose(
        self,
        steps: int | None = None,
        *,
        primer: str | Path | np.ndarray | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> np.ndarray:
        """A new piece (steps, 88) bool, from silence or after ``primer`` (a score file or a roll),
        each key drawn from the model's probability (``greedy``: on above one half); the same
        ``seed`` gives the same piece. ``steps`` defaults to the training pieces' median length."""
        steps = self.preprocessing["median_steps"] if steps is None else steps
        primer = None if primer is None else self._roll(primer, "the primer")
        return sample(self.model, steps, seed, primer, temperature, greedy)

    def write_midi(self, roll: np.ndarray, path: str | Path, bpm: float = 90.0) -> Path:
        """Write a roll (from ``compose``) as a MIDI file, ``bpm`` quarter notes a minute."""
        return write_midi(roll, path, self.steps_per_quarter, bpm)

    def score(self, piece: str | Path | np.ndarray) -> dict[str, float]:
        """The model's negative log-likelihood per step (nats) of a piece and its frame accuracy."""
        roll = self._roll(piece, "the piece")
        return judge_model(self.model, PieceDataset([roll]))

    def generate(
        self,
        prompt: str | Path | None = None,
        max_tokens: int | None = None,
        *,
        output: str | Path | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        **options,
    ) -> str:
        """``compose`` for the CLI: ``prompt`` a primer score (or None), ``max_tokens`` the steps;
        the piece is written to ``output`` (a .mid file) and a line saying so is returned."""
        unknown = {k for k, v in options.items() if v is not None}
        if unknown:
            raise ConfigError(
                f"a music model samples with temperature, greedy and seed; it takes no {sorted(unknown)}"
            )
        if output is None:
            raise ConfigError(
                "a music model writes its piece as MIDI: give an output path (--output piece.mid)"
            )
        roll = self.compose(
            max_tokens, primer=prompt or None, temperature=temperature, greedy=greedy, seed=seed
        )
        path = self.write_midi(roll, output)
        return f"wrote {path}: {len(roll)} steps, {count_notes(roll)} notes"


class MusicSession:
    """Steps of a piece fed as they are played, (T, 88) 0/1 each time, read once with the state
    carried. After each feed: the negative log-likelihood per step of everything fed so far (as
    ``score`` gives for the whole) and the model's likeliest next frame, as MIDI pitches."""

    def __init__(self, predictor: MusicPredictor) -> None:
        self.model = predictor.model
        self.state = None
        self.last = torch.zeros(1, 1, self.model.config.num_keys)  # the silent frame before a piece
        self.nll, self.steps_read = 0.0, 0

    @torch.no_grad()
    def feed(self, steps: np.ndarray, top: int | None = None) -> dict[str, Any]:
        """Read ``steps`` (T, 88) after everything fed before (``top`` is ignored)."""
        roll = check_roll(np.asarray(steps), "the steps")
        if not len(roll):
            raise DataError("the steps are empty: feed at least one (1, 88) frame")
        device = next(self.model.parameters()).device
        frames = torch.from_numpy(roll.astype(np.float32))[None].to(device)  # (1, T, K)
        inputs = torch.cat([self.last.to(device), frames[:, :-1]], 1)
        was_training = self.model.training
        self.model.eval()
        try:
            nll, self.state = self.model.frame_nll(inputs, frames, state=self.state)
            features, _ = self.model(frames[:, -1:], self.state)  # after the last step, not kept
            guess = self.model.draw(features[:, -1], greedy=True)[0]
        finally:
            self.model.train(was_training)
        self.last = frames[:, -1:]
        self.nll += float(nll.sum())
        self.steps_read += len(roll)
        pitches = (torch.nonzero(guess).flatten() + 21).tolist()
        return {"steps_read": self.steps_read, "nll": self.nll / self.steps_read, "likeliest_next": pitches}
