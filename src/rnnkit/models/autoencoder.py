"""SequenceAutoencoder: a recurrent encoder-decoder that rebuilds its input window (anomaly scores).

    model = build_model({"name": "autoencoder", "input_size": 1, "hidden_size": 32, "latent_size": 8})
    loss, _ = model.loss(windows, windows)           # windows (B, T, D): mean squared error, real steps
    errors = model.errors(windows, lengths)          # (B, T): each step's squared error, mean over D

The encoder (any recurrent encoder of :class:`EncoderConfig`: deep, bidirectional) reads the window;
its final states go through a linear bottleneck of ``latent_size``; the decoder (unidirectional,
the same cell) reads that code at every step and a linear layer maps its outputs back to the
input's features (the "repeat vector" design of the Keras examples; Malhotra et al. 2016 score
anomalies by this reconstruction error). Trained on normal data only, it rebuilds normal windows
well and unusual ones badly.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.models.classifier import check_features
from rnnkit.models.encoder import EncoderConfig, final_states
from rnnkit.models.registry import register_model


class AutoencoderConfig(EncoderConfig):
    """What a :class:`SequenceAutoencoder` is built from (the encoder's keys as EncoderConfig's)."""

    name: Literal["autoencoder"] = "autoencoder"
    input_size: int = Field(gt=0, description="features a step (the signal's channels)")
    hidden_size: int = Field(32, gt=0)
    latent_size: int = Field(16, gt=0, description="the bottleneck: the code the decoder rebuilds from")


@register_model("autoencoder", AutoencoderConfig)
class SequenceAutoencoder(nn.Module):
    """Windows (B, T, D) -> their reconstruction (B, T, D) (module docs)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c = self.config = config
        K = 2 if c.bidirectional else 1
        self.encoder = c.encoder(c.input_size)
        self.bottleneck = nn.Linear(K * c.hidden_size, c.latent_size)
        self.decoder = c.encoder(c.latent_size, bidirectional=False)
        self.output = nn.Linear(c.hidden_size, c.input_size)

    def initial_state(self, batch_size: int) -> None:
        """None: each window is read whole; nothing is carried between batches."""
        return None

    def forward(self, inputs: Tensor, lengths=None) -> Tensor:
        """The reconstruction (B, T, D) of windows ``inputs`` (B, T, D) of ``lengths`` real steps."""
        B, T = check_features(inputs, self.config.input_size)
        lengths = check_lengths(lengths, B, T)
        K = 2 if self.config.bidirectional else 1
        code = self.bottleneck(final_states(self.encoder(inputs, lengths=lengths).state, K))  # (B, Z)
        repeated = code.unsqueeze(1).expand(B, T, code.shape[-1])  # (B, T, Z)
        return self.output(self.decoder(repeated, lengths=lengths).outputs)  # (B, T, D)

    def errors(self, inputs: Tensor, lengths=None) -> Tensor:
        """(B, T) squared reconstruction error of each step, averaged over features; 0 on padding."""
        squared = (self(inputs, lengths) - inputs).pow(2).mean(-1)  # (B, T)
        if lengths is None:
            return squared
        return squared * lengths_to_mask(torch.as_tensor(lengths), inputs.shape[1], inputs.device)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state: None = None) -> tuple[Tensor, None]:
        """Mean squared reconstruction error over real steps; ``targets`` are the windows themselves."""
        if state is not None:
            raise ConfigError("an autoencoder reads each window whole and carries no state: drop train.tbptt")
        if targets.shape != inputs.shape:
            raise ConfigError(
                f"an autoencoder's targets are its inputs {tuple(inputs.shape)}, got {tuple(targets.shape)}"
            )
        errors = self.errors(inputs, lengths)  # (B, T)
        steps = inputs.shape[0] * inputs.shape[1] if lengths is None else torch.as_tensor(lengths).sum()
        return errors.sum() / steps, None

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """(B, T) per-step reconstruction errors in eval mode (the anomaly scores); mode restored."""
        was_training = self.training
        self.eval()
        try:
            return self.errors(inputs, lengths)
        finally:
            self.train(was_training)
