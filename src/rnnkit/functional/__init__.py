"""Pure tensor maths: the reference equations and the masking helpers. No modules, no state."""

from rnnkit.functional.masking import lengths_to_mask, reverse_padded
from rnnkit.functional.steps import (
    elman_step,
    elman_update,
    gru_step,
    gru_update,
    lstm_step,
    lstm_update,
)

__all__ = [
    "elman_step",
    "elman_update",
    "gru_step",
    "gru_update",
    "lengths_to_mask",
    "lstm_step",
    "lstm_update",
    "reverse_padded",
]
