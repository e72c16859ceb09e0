"""PianoRollModel: the next frame of notes from the frames before it.

    model = build_model({"name": "piano_roll", "hidden_size": 128, "output": "nade"})
    nll, state = model.frame_nll(inputs, rolls, lengths)   # (B, T) nats; inputs: rolls one step late
    loss, state = model.loss(inputs, rolls, lengths)       # the mean over real frames
    guess = model.guess(inputs, lengths)                   # (B, T, 88) bool: the likeliest next frames
    rolls = model.sample(steps=64, generator=torch.Generator().manual_seed(0))   # (1, 64, 88) bool

A unidirectional recurrent encoder reads frame t; its output at position t describes the
distribution of frame t + 1 given frames 0..t. The task feeds an all-silent frame first, so
position 0 scores a piece's opening chord. Two output distributions (``output``):

- ``independent``: each key is a coin of its own, p(x) = prod_k sigmoid(logit_k), the RNN with
  sigmoid outputs of Boulanger-Lewandowski et al. (2012). It cannot say "C or E, not both".
- ``nade``: the RNN-NADE of the same paper. The keys of a frame are drawn from the lowest up, each
  given the ones below it, by a neural autoregressive distribution estimator (Larochelle & Murray
  2011) with ``nade_size`` hidden units, whose biases the recurrent output sets at every step:
  h_k = sigmoid(c + W_<k x_<k), p(x_k = 1 | x_<k) = sigmoid(b_k + V_k . h_k). The likelihood is
  still exact, so chords (notes that go together) are modelled; sampling a frame takes one small
  step per key.

The loss is the negative log-likelihood of a frame, summed over keys and averaged over the real
frames: nats per time step, the measure the music literature reports.
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
    output: Literal["independent", "nade"] = Field("independent", description="a frame's distribution")
    nade_size: int = Field(64, gt=0, description="nade: hidden units of the NADE")
    output_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the recurrent outputs")

    @model_validator(mode="after")
    def _reads_forward(self) -> PianoRollConfig:
        if self.bidirectional:
            raise ValueError(
                "a piano-roll model predicts the next frame, so it reads forward: set bidirectional=false"
            )
        return self


@register_model("piano_roll", PianoRollConfig)
class PianoRollModel(nn.Module):
    """Frames (B, T, K) 0/1 -> the distribution of the frame after each (module docs)."""

    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__()
        c = self.config = config
        K, H = c.num_keys, c.hidden_size
        self.encoder = c.encoder(K)
        self.dropout = nn.Dropout(c.output_dropout)
        self.output = nn.Linear(H, K)  # the keys' logits (independent) or the NADE's visible biases b
        if c.output == "nade":
            self.hidden_bias = nn.Linear(H, c.nade_size)  # c
            self.W = nn.Parameter(torch.randn(K, c.nade_size) * 0.05)  # key k's pull on the NADE's units
            self.V = nn.Parameter(torch.randn(K, c.nade_size) * 0.05)  # the units' pull on key k

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Zeros: fields (L, B, H)."""
        return self.encoder.initial_state(batch_size)

    def forward(self, frames: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        """The recurrent outputs (B, T, H) after each frame, and the state after the last."""
        B, T = check_features(frames, self.config.num_keys)
        lengths = check_lengths(lengths, B, T)
        encoded = self.encoder(frames, state, lengths=lengths)
        return self.dropout(encoded.outputs), encoded.state

    def logits(self, features: Tensor, targets: Tensor) -> Tensor:
        """Each key's logit (N, K) at the frames ``targets`` (N, K) that follow ``features`` (N, H):
        independent ones, or under nade each given the target's keys below it."""
        if self.config.output == "independent":
            return self.output(features)
        units = self.hidden_bias(features)  # (N, Hn): the NADE's units before any key
        pulls = []
        for k in range(self.config.num_keys):  # (N, Hn) steps: 5x faster than one cumsum over
            pulls.append(torch.sigmoid(units) @ self.V[k])  # (N, K, Hn), whose memory traffic dominates
            units = torch.addcmul(units, targets[:, k : k + 1], self.W[k])
        return self.output(features) + torch.stack(pulls, 1)  # (N, K)

    def frame_nll(
        self, inputs: Tensor, targets: Tensor, lengths=None, state=None
    ) -> tuple[Tensor, NamedTuple]:
        """Each frame's negative log-likelihood in nats (B, T), zero past each length."""
        features, state = self(inputs, state, lengths)
        B, T = features.shape[:2]
        if targets.shape != inputs.shape:
            raise ShapeError(
                f"targets must be (B, T, K) = {tuple(inputs.shape)} like the inputs, "
                f"got {tuple(targets.shape)}"
            )
        targets = targets.to(features.dtype)
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise DataError("targets must be 0/1: whether each key sounds at each step")
        lengths = check_lengths(lengths, B, T)
        real = torch.ones(B, T, dtype=torch.bool, device=features.device)
        if lengths is not None:
            real = lengths_to_mask(lengths, T, features.device)  # (B, T): padded frames cost nothing
        logits = self.logits(features[real], targets[real])  # (N, K) over the N real frames
        nll = F.binary_cross_entropy_with_logits(logits, targets[real], reduction="none").sum(-1)  # (N,)
        return features.new_zeros(B, T).masked_scatter(real, nll), state

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, NamedTuple]:
        """Mean negative log-likelihood of a real frame, in nats (summed over keys)."""
        nll, state = self.frame_nll(inputs, targets, lengths, state)
        frames = nll.numel() if lengths is None else int(torch.as_tensor(lengths).sum())
        return nll.sum() / frames, state

    def draw(self, features: Tensor, greedy: bool, temperature: float = 1.0, generator=None) -> Tensor:
        """One frame (N, K) bool after each row of ``features`` (N, H): drawn, or (``greedy``) each
        key on when its probability is above one half (under nade, key by key from the lowest)."""
        if self.config.output == "independent":
            probs = torch.sigmoid(self.output(features) / temperature)
            return probs > 0.5 if greedy else torch.bernoulli(probs, generator=generator).bool()
        visible = self.output(features)  # (N, K)
        units = self.hidden_bias(features)  # (N, Hn)
        frame = torch.zeros_like(visible, dtype=torch.bool)
        for k in range(self.config.num_keys):
            p = torch.sigmoid((visible[:, k] + torch.sigmoid(units) @ self.V[k]) / temperature)  # (N,)
            frame[:, k] = p > 0.5 if greedy else torch.bernoulli(p, generator=generator).bool()
            units = torch.addcmul(units, frame[:, k : k + 1].to(units.dtype), self.W[k])
        return frame

    @torch.no_grad()
    def guess(self, inputs: Tensor, lengths=None) -> Tensor:
        """The next frame (B, T, K) bool the model finds likeliest after each position, keys on above
        one half (under nade chosen key by key): what a frame accuracy is computed from."""
        with _evaluating(self):
            features, _ = self(inputs, lengths=lengths)
            B, T, H = features.shape
            return self.draw(features.reshape(B * T, H), greedy=True).reshape(B, T, -1)

    @torch.no_grad()
    def predict(self, frames: Tensor, state=None, lengths=None) -> tuple[Tensor, NamedTuple]:
        """(probabilities (B, T, K) of each key at the step after each frame, state) of an independent
        model, in eval mode. A nade model's keys are not independent: use frame_nll, guess or sample."""
        if self.config.output != "independent":
            raise ConfigError("a nade model's keys depend on one another: use frame_nll, guess or sample")
        with _evaluating(self):
            features, state = self(frames, state, lengths)
            return torch.sigmoid(self.output(features)), state

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
        """``steps`` new frames (B, steps, K) bool, each drawn given the frames before (``greedy``:
        keys on above one half). ``primer`` (B, P, K) 0/1 frames are read first and continued;
        without one the piece starts from silence. ``temperature`` divides every logit (below 1:
        surer, fewer stray notes)."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature!r}")
        device = next(self.parameters()).device
        start = torch.zeros(batch_size, 1, self.config.num_keys, device=device)
        frames = start if primer is None else torch.cat([start, primer.to(device, torch.float32)], 1)
        out = []
        with _evaluating(self):
            features, state = self(frames)
            for _ in range(steps):
                frame = self.draw(features[:, -1], greedy, temperature, generator)  # (B, K)
                out.append(frame)
                features, state = self(frame[:, None].float(), state)
        return torch.stack(out, 1)  # (B, steps, K)


class _evaluating:
    """Eval mode for a block, the module's mode restored after it."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc) -> None:
        self.module.train(self.was_training)
