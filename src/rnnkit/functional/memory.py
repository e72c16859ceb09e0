"""Neural Turing Machine memory: addressing, read and write (Graves, Wayne & Danihelka 2014, sec. 3).

Shapes: B batch, N memory rows, M row width, R heads addressing at once (read and write heads alike),
K = 2S + 1 shift offsets -S..S. A weighting is a distribution over rows: (B, R, N), each row summing
to one. The functions take head parameters already in range (beta >= 0, g in [0, 1], a shift
distribution, gamma >= 1); the cell applies the activations that put them there.

Addressing (sec. 3.3, fig. 2) runs content -> interpolation -> shift -> sharpening::

    w = address(memory, w_prev, key, beta, g, shift, gamma)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_similarity(memory: Tensor, key: Tensor, eps: float = 1e-8) -> Tensor:
    """K[u, v] = u . v / (|u| |v|) of every key against every row: (B, N, M), (B, R, M) -> (B, R, N).

    Vectors whose largest entry exceeds 1 are divided by it first, so huge keys or rows never overflow
    the squared norm; a zero vector (norm below ``eps``) has similarity 0 with everything.
    """
    rows = F.normalize(_shrink(memory), dim=-1, eps=eps)  # (B, N, M)
    keys = F.normalize(_shrink(key), dim=-1, eps=eps)  # (B, R, M)
    return keys @ rows.transpose(-1, -2)  # (B, R, N)


def _shrink(x: Tensor) -> Tensor:
    """x / max(1, max |x|) along the last axis. Cosine ignores the scale, so the divisor needs no gradient."""
    return x / x.detach().abs().amax(-1, keepdim=True).clamp_min(1.0)


def content_weights(memory: Tensor, key: Tensor, beta: Tensor) -> Tensor:
    """Content addressing (eq. 5): w_c(i) = softmax_i(beta K[k, M(i)]).

    memory (B, N, M), key (B, R, M), beta (B, R) finite and >= 0 (the key strength) -> (B, R, N).
    """
    return torch.softmax(beta.unsqueeze(-1) * cosine_similarity(memory, key), dim=-1)  # (B, R, N)


def interpolate(w_content: Tensor, w_prev: Tensor, g: Tensor) -> Tensor:
    """Interpolation gate (eq. 7): w_g = g w_c + (1 - g) w_prev. Weightings (B, R, N), g (B, R) in [0, 1]."""
    return torch.lerp(w_prev, w_content, g.unsqueeze(-1))


def circular_shift(w: Tensor, shift: Tensor) -> Tensor:
    """Circular convolution (eq. 8): w~(i) = sum_j w(j) s(i - j mod N).

    w (B, R, N); shift (B, R, K), a distribution over the offsets -S..S (K = 2S + 1). Offset +1 moves
    the focus from row i to row i + 1, and from the last row to row 0. Returns (B, R, N).
    """
    S = (shift.shape[-1] - 1) // 2
    rolled = torch.stack([w.roll(o, dims=-1) for o in range(-S, S + 1)], dim=-2)  # (B, R, K, N)
    return (shift.unsqueeze(-1) * rolled).sum(-2)  # (B, R, N)


def sharpen(w: Tensor, gamma: Tensor) -> Tensor:
    """Sharpening (eq. 9): w(i)^gamma / sum_j w(j)^gamma, in log space. w (B, R, N), gamma (B, R) >= 1.

    Computed as softmax(gamma (log w - max log w)): the largest term is exp(0), so neither a huge gamma
    nor a zero entry (log clamped at the dtype's smallest normal) makes it 0/0.
    """
    log_w = torch.log(w.clamp_min(torch.finfo(w.dtype).tiny))  # (B, R, N)
    log_w = log_w - log_w.amax(-1, keepdim=True)
    return torch.softmax(gamma.unsqueeze(-1) * log_w, dim=-1)


def address(
    memory: Tensor, w_prev: Tensor, key: Tensor, beta: Tensor, g: Tensor, shift: Tensor, gamma: Tensor
) -> Tensor:
    """The whole addressing pipeline of sec. 3.3 (fig. 2): content, interpolation, shift, sharpening.

    memory (B, N, M); w_prev (B, R, N); key (B, R, M); beta, g, gamma (B, R); shift (B, R, K).
    Returns the new weightings (B, R, N).
    """
    w = interpolate(content_weights(memory, key, beta), w_prev, g)
    return sharpen(circular_shift(w, shift), gamma)


def read_memory(memory: Tensor, w: Tensor) -> Tensor:
    """Read (eq. 2): r = sum_i w(i) M(i). memory (B, N, M), w (B, R, N) -> read vectors (B, R, M)."""
    return w @ memory


def write_memory(memory: Tensor, w: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Write (eq. 3-4): every head erases, then every head adds.

    M~ = M prod_h (1 - w_h e_h^T);  M' = M~ + sum_h w_h a_h^T.
    memory (B, N, M); w (B, W, N) for W write heads; erase (B, W, M) in [0, 1]; add (B, W, M).
    Returns the new memory (B, N, M).
    """
    keep = (1 - w.unsqueeze(-1) * erase.unsqueeze(-2)).prod(1)  # (B, W, N, M) -> (B, N, M)
    return memory * keep + w.transpose(-1, -2) @ add  # (B, N, W) @ (B, W, M) -> (B, N, M)
