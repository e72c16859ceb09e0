"""CTCModel: a recurrent acoustic model trained with connectionist temporal classification.

    model = build_model({"name": "ctc", "input_size": 13, "num_labels": 10, "hidden_size": 64})
    log_probs = model(mfcc, lengths)                 # (B, T, 1 + num_labels): 0 the blank, c + 1 label c
    loss, _ = model.loss(mfcc, labels, lengths)      # labels (B, S) ids 0 .. num_labels-1, -100 after the end

Any recurrent encoder (deep; bidirectional by default, as acoustic models are) reads the frames and
a linear layer gives each frame a distribution over the blank and the labels (Graves et al. 2006).
The loss is torch's CTC loss over every alignment of each label sequence, averaged over the batch
(each sequence's loss divided by its label count, as ``reduction="mean"`` does). Decoding the
log-probabilities into labels is :mod:`rnnkit.decoding.ctc`'s (greedy or prefix beam search).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.models.classifier import check_features
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.registry import register_model

PAD = -100  # after a label sequence's end


class CTCConfig(EncoderConfig):
    """What a :class:`CTCModel` is built from (the encoder's keys as EncoderConfig's)."""

    name: Literal["ctc"] = "ctc"
    input_size: int = Field(gt=0, description="features a frame, e.g. 13 MFCCs")
    num_labels: int = Field(gt=0, description="labels besides the blank, e.g. 10 digits")
    hidden_size: int = Field(64, gt=0)
    bidirectional: bool = True


@register_model("ctc", CTCConfig)
class CTCModel(nn.Module):
    """Frames (B, T, D) -> per-frame log-probabilities (B, T, 1 + num_labels), blank first."""

    def __init__(self, config: CTCConfig) -> None:
        super().__init__()
        c = self.config = config
        K = 2 if c.bidirectional else 1
        self.encoder = c.encoder(c.input_size)
        self.output = nn.Linear(K * c.hidden_size, 1 + c.num_labels)

    def initial_state(self, batch_size: int) -> None:
        """None: each utterance is read whole."""
        return None

    def forward(self, inputs: Tensor, lengths=None) -> Tensor:
        B, T = check_features(inputs, self.config.input_size)
        lengths = check_lengths(lengths, B, T)
        return torch.log_softmax(self.output(self.encoder(inputs, lengths=lengths).outputs), -1)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state: None = None) -> tuple[Tensor, None]:
        """CTC loss; ``targets`` (B, S) label ids 0 .. num_labels-1, padded with -100 after each end."""
        if state is not None:
            raise ConfigError("a CTC model reads each utterance whole and carries no state: drop train.tbptt")
        B, T = inputs.shape[0], inputs.shape[1]
        if targets.dim() != 2 or targets.shape[0] != B:
            raise ShapeError(
                f"targets must be (B, S) label ids padded with {PAD}, got {tuple(targets.shape)}"
            )
        frames = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths).cpu()
        real = targets != PAD
        counts = real.sum(1).cpu()
        labels = targets[real]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.config.num_labels):
            low, high = int(labels.min()), int(labels.max())
            raise DataError(f"label ids must lie in [0, {self.config.num_labels}), got {low} to {high}")
        repeats = (
            (real[:, 1:] & (targets[:, 1:] == targets[:, :-1])).sum(1).cpu()
        )  # each needs a blank between
        too_long = (counts + repeats > frames).nonzero().flatten().tolist()
        if too_long:
            raise DataError(
                f"utterances {too_long[:5]} have more labels (and blanks between repeats) than frames: "
                "CTC cannot align them"
            )
        log_probs = self(inputs, lengths).transpose(0, 1)  # (T, B, C)
        loss = F.ctc_loss(log_probs, labels + 1, frames, counts, blank=0, reduction="mean")
        return loss, None

    @torch.no_grad()
    def read_on(self, inputs: Tensor, state=None) -> tuple[Tensor, object]:
        """Per-frame log-probabilities (B, T, 1 + num_labels) of ``inputs`` read after the frames
        that left ``state`` (None: the start), and the state after them, in eval mode: frames
        arriving live, each read once. A bidirectional model reads backwards too and cannot."""
        if self.config.bidirectional:
            raise ConfigError(
                "this CTC model is bidirectional: it reads each utterance from its end too, so it cannot "
                "read frames as they arrive; train one with bidirectional: false for that"
            )
        check_features(inputs, self.config.input_size)
        was_training = self.training
        self.eval()
        try:
            encoded = self.encoder(inputs, state)
            return torch.log_softmax(self.output(encoded.outputs), -1), encoded.state
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """Per-frame log-probabilities (B, T, 1 + num_labels) in eval mode (mode restored)."""
        was_training = self.training
        self.eval()
        try:
            return self(inputs, lengths)
        finally:
            self.train(was_training)
