"""PianoRollModel: the next frame of notes from the frames before it, each note a coin of its own.

    model = build_model({"name": "piano_roll", "hidden_size": 128})
    logits, state = model(frames)                    # frames (B, T, 88) 0/1 -> logits (B, T, 88)
    loss, state = model.loss(inputs, rolls, lengths) # inputs: rolls shifted one step right
    rolls = model.sample(steps=64, generator=torch.Generator().manual_seed(0))   # (1, 64, 88) bool

A unidirectional recurrent encoder reads frame t and gives, at position t, the probability that
each key sounds at step t + 1: p(x_{t+1} | x_0..x_t) = prod_k Bernoulli(x_{t+1,k}; sigmoid(logit_k))
(the RNN of Boulanger-Lewandowski et al. 2012 with independent sigmoid outputs). The task feeds an
all-silent frame first, so position 0 scores a piece's opening chord. The loss is the negative
log-likelihood of a frame, summed over keys and averaged over the real frames: nats per time step,
the measure the music literature reports.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.models.classifier import check_features
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.registry import register_model


class PianoRollConfig(EncoderConfig):
    """What a :class:`PianoRollModel` is built from (the encoder's keys as EncoderConfig's)."""

    name: Literal["piano_roll"] = "piano_roll"
    num_keys: int = Field(88, gt=0, description="notes a frame, 88 piano keys")
    hidden_size: int = Field(128, gt=0)
    output_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the note outputs")

    @model_validator(mode="after")
    def _reads_forward(self) -> PianoRollConfig:
        if self.bidirectional:
            raise ValueError(
                "a piano-roll model predicts the next frame, so it reads forward: set bidirectional=false"
            )
        return self


@register_model("piano_roll", PianoRollConfig)
class PianoRollModel(nn.Module):
    """Frames (B, T, K) -> logits (B, T, K) of the frame after each, and the state after the last."""

    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = c.encoder(c.num_keys)
        self.dropout = nn.Dropout(c.output_dropout)
        self.output = nn.Linear(c.hidden_size, c.num_keys)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Zeros: fields (L, B, H)."""
        return self.encoder.initial_state(batch_size)

    def forward(self, frames: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        B, T = check_features(frames, self.config.num_keys)
        lengths = check_lengths(lengths, B, T)
        encoded = self.encoder(frames, state, lengths=lengths)
        return self.output(self.dropout(encoded.outputs)), encoded.state

    def frame_nll(
        self, inputs: Tensor, targets: Tensor, lengths=None, state=None
    ) -> tuple[Tensor, NamedTuple]:
        """Each frame's negative log-likelihood in nats (B, T), zero past each length."""
        logits, state = self(inputs, state, lengths)
        if targets.shape != logits.shape:
            raise ShapeError(
                f"targets must be (B, T, K) = {tuple(logits.shape)} like the inputs, "
                f"got {tuple(targets.shape)}"
            )
        targets = targets.to(logits.dtype)
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise DataError("targets must be 0/1: whether each key sounds at each step")
        nll = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)  # (B, T)
        B, T = nll.shape
        if lengths is not None:
            nll = nll * lengths_to_mask(check_lengths(lengths, B, T), T, nll.device)
        return nll, state

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, NamedTuple]:
        """Mean negative log-likelihood of a real frame, in nats (summed over keys)."""
        nll, state = self.frame_nll(inputs, targets, lengths, state)
        frames = nll.numel() if lengths is None else int(torch.as_tensor(lengths).sum())
        return nll.sum() / frames, state

    @torch.no_grad()
    def predict(self, frames: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        """(probabilities (B, T, K) of each key at the step after each frame, state), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            logits, state = self(frames, state, lengths)
        finally:
            self.train(was_training)
        return torch.sigmoid(logits), state

    @torch.no_grad()
    def sample(
        self,
        steps: int,
        batch_size: int = 1,
        primer: Tensor | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``steps`` new frames (B, steps, K) bool, each key drawn from its probability given the
        frames before (``greedy``: on when above one half). ``primer`` (B, P, K) 0/1 frames are
        read first and continued; without one the piece starts from silence. ``temperature``
        divides the logits (below 1: surer, fewer stray notes)."""
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature!r}")
        device = next(self.parameters()).device
        K = self.config.num_keys
        start = torch.zeros(batch_size, 1, K, device=device)
        frames = start if primer is None else torch.cat([start, primer.to(device, torch.float32)], 1)
        was_training = self.training
        self.eval()
        try:
            logits, state = self(frames)
            out = []
            for _ in range(steps):
                probs = torch.sigmoid(logits[:, -1] / temperature)  # (B, K)
                frame = probs > 0.5 if greedy else torch.bernoulli(probs, generator=generator).bool()
                out.append(frame)
                logits, state = self(frame[:, None].float(), state)
        finally:
            self.train(was_training)
        return torch.stack(out, 1)  # (B, steps, K)
