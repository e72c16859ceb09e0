"""Lengths, masks and per-sequence reversal for padded, batch-first tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int, device: torch.device | None = None) -> Tensor:
    """lengths (B,) -> bool mask (B, T), True on real steps."""
    steps = torch.arange(max_len, device=device)  # (T,)
    return steps[None, :] < lengths.to(device)[:, None]  # (B, T)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (B, T, ...) within its own length; padding stays in place.

    Applying it twice gives x back. With ``lengths=None`` it is ``x.flip(1)``.
    """
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    steps = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
    lens = lengths.to(x.device)[:, None]  # (B, 1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)
