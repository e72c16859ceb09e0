"""BitSequenceModel: binary vectors in, one logit per output bit and step out (the NTM paper's tasks).

    model = build_model({"name": "bit_sequence", "input_size": 9, "output_size": 8, "cell": "ntm"})
    logits = model(inputs, lengths)              # inputs (B, T, D) floats -> (B, T, O) logits
    loss, _ = model.loss(inputs, targets, lengths)   # targets (B, T, O): 0/1 where counted, -1 elsewhere
    bits = model.predict(inputs, lengths)         # (B, T, O) probabilities, in eval mode

The encoder is any of :class:`rnnkit.models.encoder.MemoryEncoderConfig`'s, a Neural Turing Machine
(``cell: ntm``, Graves et al. 2014) by default, or a Differentiable Neural Computer (``cell: dnc``,
Graves et al. 2016); a linear layer gives each step O logits. The loss is
binary cross-entropy on the steps and bits whose target is 0 or 1, averaged over them: the inputs'
own steps and the padding carry the target -1 (:data:`IGNORE`) and count for nothing.

Shape letters as in :mod:`rnnkit`, plus O = output_size, the bits each step outputs.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from rnnkit.checks import check_input, check_lengths
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.models.encoder import MemoryEncoderConfig
from rnnkit.models.registry import register_model

IGNORE = -1.0  # the target of a step (or padding) where the loss and the metric do not count


class BitSequenceConfig(MemoryEncoderConfig):
    """What a :class:`BitSequenceModel` is built from; ``input_size`` and ``output_size`` come from the
    data. The encoder's keys are those of :class:`MemoryEncoderConfig`; by default an NTM with the
    paper's LSTM controller of 100 units and a 128 x 20 memory."""

    name: Literal["bit_sequence"] = "bit_sequence"
    input_size: int = Field(gt=0, description="D, input channels a step: bits and delimiters")
    output_size: int = Field(gt=0, description="O, bits a step outputs")
    cell: Literal["rnn", "lstm", "gru", "mingru", "minlstm", "ntm", "dnc"] = "ntm"
    hidden_size: int = Field(100, gt=0)


@register_model("bit_sequence", BitSequenceConfig)
class BitSequenceModel(nn.Module):
    """Float inputs (B, T, D) -> logits (B, T, O): the configured encoder, then a linear layer.

    Example:
        >>> model = BitSequenceModel(BitSequenceConfig(input_size=9, output_size=8, memory_rows=16))
        >>> model(torch.zeros(2, 5, 9), lengths=[5, 3]).shape     # (2, 5, 8)
    """

    def __init__(self, config: BitSequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = config.encoder(config.input_size)
        self.head = nn.Linear(self.encoder.output_size, config.output_size)

    def initial_state(self, batch_size: int) -> None:
        """None: every sequence is read whole, from the encoder's initial state."""
        return None

    def forward(self, inputs: Tensor, lengths=None) -> Tensor:
        """inputs (B, T, D), lengths (B,) or None -> logits (B, T, O), zero-input padding included."""
        x = check_input(inputs, self.config.input_size, self.head.weight.dtype)
        lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        return self.head(self.encoder(x, lengths=lengths).outputs)  # (B, T, K*H) -> (B, T, O)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state: None = None) -> tuple[Tensor, None]:
        """Mean binary cross-entropy over the counted bits (targets 0 or 1; -1 elsewhere); (loss, None)."""
        if state is not None:
            raise ConfigError(
                "a bit-sequence model reads each sequence whole and carries no state: train it without "
                "train.tbptt"
            )
        logits = self(inputs, lengths)  # (B, T, O)
        counted = self.counted(targets, logits.shape, lengths)  # (B, T, O)
        return F.binary_cross_entropy_with_logits(logits[counted], targets[counted]), None

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths=None) -> Tensor:
        """Each output bit's probability (B, T, O), in eval mode (the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(inputs, lengths))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def memory_trace(self, inputs: Tensor) -> list:
        """Each NTM or DNC layer's state after every step of ``inputs`` (B, T, D), real steps only: a
        list of NTMState or DNCState with fields (T, B, width) (see :meth:`NTMEncoder.trace`)."""
        if self.config.cell not in ("ntm", "dnc"):
            raise ConfigError(
                f"memory_trace reads an NTM's or a DNC's heads; this model's cell is {self.config.cell!r}"
            )
        return self.encoder.trace(check_input(inputs, self.config.input_size, self.head.weight.dtype))

    def counted(self, targets: Tensor, shape: torch.Size, lengths=None) -> Tensor:
        """Where the loss counts, (B, T, O) bool: targets 0 or 1 on real steps. Checks the targets."""
        if not isinstance(targets, Tensor) or tuple(targets.shape) != tuple(shape):
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(f"targets must be (B, T, O) = {tuple(shape)} bits, got {got}")
        if not targets.is_floating_point():
            raise ShapeError(f"targets must be floats (0, 1, or -1 where not counted), got {targets.dtype}")
        counted = targets >= 0  # (B, T, O)
        if lengths is not None:
            real = lengths_to_mask(check_lengths(lengths, shape[0], shape[1]), shape[1], targets.device)
            counted &= real.unsqueeze(-1)  # (B, T, 1)
        bad = counted & (targets != 0) & (targets != 1)
        if bool(bad.any()) or bool(((targets < 0) & (targets != IGNORE)).any()):
            raise DataError("targets must be 0 or 1 where they count and -1 (IGNORE) elsewhere")
        if not bool(counted.any()):
            raise DataError(
                "no target counts in this batch (every target is -1): give each sequence its outputs"
            )
        return counted
