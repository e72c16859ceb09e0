"""Reusable scratch memory for the compiled loops: large arrays without a page fault per use.

glibc hands every large block (over 32 MiB, and often smaller) back to the operating system when it
is freed, so a fresh 50 MB array pays thousands of page faults and a zero fill on first touch: on a
2-core VM, ``torch.empty`` + fill of the 100 MB an LSTM layer saves for backward took 35 ms, a third
of the layer's whole training step. The loops take their arrays from here instead and give them
back when done: at once for scratch, and when autograd drops the graph for what forward saves.

A few free arenas are kept (``MAX_FREE``); ``release()`` drops them.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import Tensor

MAX_FREE = 6  # free arenas kept; a step of an L-layer model in training holds about L at once
MIN_NUMEL = 1 << 18  # smaller arrays come from malloc's own free lists anyway

_free: list[Tensor] = []
_lock = threading.Lock()


def take(numel: int, dtype: torch.dtype) -> Tensor:
    """A 1-D CPU tensor of at least ``numel`` elements, uninitialised; reuses a free arena that fits."""
    if numel >= MIN_NUMEL:
        with _lock:
            fits = [i for i, a in enumerate(_free) if a.dtype == dtype and numel <= a.numel() <= 2 * numel]
            if fits:
                return _free.pop(min(fits, key=lambda i: _free[i].numel()))  # by index: == compares values
    return torch.empty(numel, dtype=dtype)


def give(arena: Tensor) -> None:
    """Returns an arena from :func:`take`; no view of it may be used afterwards."""
    if arena.numel() < MIN_NUMEL:
        return
    with _lock:
        _free.append(arena)
        del _free[:-MAX_FREE]  # the oldest go back to the system


def give_when_dead(owner: object, arena: Tensor) -> None:
    """Gives ``arena`` back once ``owner`` (an autograd context holding views of it) is collected."""
    weakref.finalize(owner, give, arena)


def release() -> None:
    """Frees every arena kept for reuse."""
    with _lock:
        _free.clear()
