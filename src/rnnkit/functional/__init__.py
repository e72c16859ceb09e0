"""Tensor maths without modules and without state: the reference step equations (``steps``, the spec
every fast path is tested against), the scans (``scan``) and the masking helpers (``masking``).
``memory`` holds the Neural Turing Machine's addressing, read and write (Graves et al. 2014) and the
Differentiable Neural Computer's usage, allocation and temporal links (Graves et al. 2016).
The compiled C++ loops, their build cache and scratch memory live in :mod:`rnnkit.kernels`.

The scan chooser is ``rnnkit.functional.scan.scan``; it is not re-exported here, where its name would
hide the ``scan`` submodule.
"""

from rnnkit.functional.masking import lengths_to_mask, reverse_padded
from rnnkit.functional.memory import (
    address,
    allocation_weights,
    circular_shift,
    content_weights,
    cosine_similarity,
    interpolate,
    memory_retention,
    read_memory,
    read_weighting,
    sharpen,
    temporal_weights,
    update_link,
    update_precedence,
    update_usage,
    write_memory,
    write_weighting,
)
from rnnkit.functional.scan import log_space_scan, sequential_scan
from rnnkit.functional.steps import (
    elman_step,
    elman_update,
    gru_step,
    gru_update,
    log_positive_activation,
    lstm_step,
    lstm_update,
    mingru_step,
    minlstm_step,
    positive_activation,
)

__all__ = [
    "address",
    "allocation_weights",
    "circular_shift",
    "content_weights",
    "cosine_similarity",
    "elman_step",
    "elman_update",
    "gru_step",
    "gru_update",
    "interpolate",
    "lengths_to_mask",
    "log_positive_activation",
    "log_space_scan",
    "lstm_step",
    "lstm_update",
    "memory_retention",
    "mingru_step",
    "minlstm_step",
    "positive_activation",
    "read_memory",
    "read_weighting",
    "reverse_padded",
    "sequential_scan",
    "sharpen",
    "temporal_weights",
    "update_link",
    "update_precedence",
    "update_usage",
    "write_memory",
    "write_weighting",
]
