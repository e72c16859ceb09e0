"""External memory: the Neural Turing Machine's addressing, read and write (Graves, Wayne & Danihelka
2014, sec. 3) and the Differentiable Neural Computer's allocation and temporal links (Graves et al.
2016, "Hybrid computing using a neural network with dynamic external memory", Methods).

Shapes: B batch, N memory rows, M row width (the DNC paper's W), R heads addressing at once (read and
write heads alike), K = 2S + 1 shift offsets -S..S. A weighting is a distribution over rows: (B, R, N),
each row summing to one (a DNC's to at most one). The functions take head parameters already in range
(beta >= 0, g in [0, 1], a shift distribution, gamma >= 1); the cell applies the activations that put
them there.

NTM addressing (sec. 3.3, fig. 2) runs content -> interpolation -> shift -> sharpening::

    w = address(memory, w_prev, key, beta, g, shift, gamma)

A DNC step (one write head) runs usage -> allocation -> write weighting -> write -> links -> reads::

    usage = update_usage(usage, w_write_prev, memory_retention(free_gates, w_read_prev))
    w_write = write_weighting(allocation_weights(usage), content_weights(...), g_alloc, g_write)
    link = update_link(link, w_write, precedence); precedence = update_precedence(precedence, w_write)
    forward, backward = temporal_weights(link, w_read_prev)
    w_read = read_weighting(backward, content_weights(...), forward, read_modes)
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


# --- Differentiable Neural Computer (Graves et al. 2016, Methods) -----------------------------------

ALLOCATION_EPS = 1e-6  # DeepMind's dnc/addressing.py lifts usage to eps + (1 - eps) u before the product


def memory_retention(free_gates: Tensor, w_read: Tensor) -> Tensor:
    """Memory retention (Methods, "Dynamic memory allocation"): psi = prod_i (1 - f_i w^r_{t-1,i}).

    free_gates (B, R) in [0, 1]; w_read (B, R, N), the previous step's read weightings. Returns psi
    (B, N) in [0, 1]: how much of each row stays in use after the read heads free what they read.
    """
    return (1 - free_gates.unsqueeze(-1) * w_read).prod(1)  # (B, R, N) -> (B, N)


def update_usage(usage: Tensor, w_write: Tensor, retention: Tensor) -> Tensor:
    """Usage (Methods, "Dynamic memory allocation"): u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t.

    usage (B, N) in [0, 1]; w_write (B, N), the previous step's write weighting; retention (B, N), psi_t
    from :func:`memory_retention`. Returns u_t (B, N) in [0, 1]: written rows rise, freed rows fall.
    """
    return (usage + w_write - usage * w_write) * retention


def allocation_weights(usage: Tensor, eps: float = ALLOCATION_EPS) -> Tensor:
    """Allocation weighting (Methods, "Dynamic memory allocation"):
    a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i], with phi the rows sorted by usage, least used first.

    usage (B, N) in [0, 1] -> a (B, N), summing to 1 - prod_j u_j <= 1: most of it on the least used
    row. As in DeepMind's implementation (dnc/addressing.py), usage is first lifted to
    eps + (1 - eps) u, so no product of usages is exactly 0 (nor its gradient degenerate). Rows of
    equal usage are taken in index order (a stable sort). The gradient flows through the usage
    values; the order itself is piecewise constant, so a is discontinuous where two usages cross.
    """
    usage = eps + (1 - eps) * usage  # (B, N)
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)  # (B, N) each, least used first
    before = torch.cumprod(sorted_usage, -1)  # (B, N): prod_{i<=j}
    before = torch.cat([torch.ones_like(before[:, :1]), before[:, :-1]], -1)  # exclusive: prod_{i<j}
    return torch.zeros_like(usage).scatter(-1, order, (1 - sorted_usage) * before)  # back to row order


def write_weighting(
    allocation: Tensor, content: Tensor, allocation_gate: Tensor, write_gate: Tensor
) -> Tensor:
    """Write weighting (Methods, "Write weighting"): w^w = g^w (g^a a + (1 - g^a) c^w).

    allocation, content (B, N), each summing to at most 1; allocation_gate, write_gate (B,) in [0, 1].
    Returns w^w (B, N), summing to at most 1.
    """
    return write_gate.unsqueeze(-1) * torch.lerp(content, allocation, allocation_gate.unsqueeze(-1))


def update_link(link: Tensor, w_write: Tensor, precedence: Tensor) -> Tensor:
    """Temporal link matrix (Methods, "Temporal memory linkage"):
    L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j], and L_t[i, i] = 0.

    link (B, N, N), L_{t-1}: L[i, j] is how much row i was written right after row j; w_write (B, N),
    this step's write weighting; precedence (B, N), the previous step's p_{t-1}. Returns L_t
    (B, N, N), every entry in [0, 1] and every row and column summing to at most 1.
    """
    w_i, w_j = w_write.unsqueeze(-1), w_write.unsqueeze(-2)  # (B, N, 1), (B, 1, N)
    link = (1 - w_i - w_j) * link + w_i * precedence.unsqueeze(-2)  # (B, N, N)
    diagonal = torch.eye(link.shape[-1], dtype=torch.bool, device=link.device)  # (N, N)
    return link.masked_fill(diagonal, 0.0)


def update_precedence(precedence: Tensor, w_write: Tensor) -> Tensor:
    """Precedence weighting (Methods, "Temporal memory linkage"): p_t = (1 - sum_i w[i]) p_{t-1} + w.

    precedence (B, N), p_{t-1}; w_write (B, N), this step's write weighting. Returns p_t (B, N), summing
    to at most 1: where the last write went, faded by how much was written since.
    """
    return (1 - w_write.sum(-1, keepdim=True)) * precedence + w_write


def temporal_weights(link: Tensor, w_read: Tensor) -> tuple[Tensor, Tensor]:
    """Forward and backward weightings (Methods, "Temporal memory linkage"): f = L_t w^r, b = L_t^T w^r.

    link (B, N, N), L_t; w_read (B, R, N), the previous step's read weightings. Returns (forward,
    backward), each (B, R, N): the rows written just after, and just before, where each head read.
    """
    forward = w_read @ link.transpose(-1, -2)  # (B, R, N): f[i] = sum_j L[i, j] w[j]
    return forward, w_read @ link  # b[j] = sum_i L[i, j] w[i]


def read_weighting(backward: Tensor, content: Tensor, forward: Tensor, modes: Tensor) -> Tensor:
    """Read weighting (Methods, "Read weighting"): w^r = pi[1] b + pi[2] c^r + pi[3] f.

    backward, content, forward (B, R, N); modes (B, R, 3), each head's distribution over (backward,
    content, forward). Returns w^r (B, R, N), each head's summing to at most 1.
    """
    weightings = torch.stack([backward, content, forward], -1)  # (B, R, N, 3)
    return (weightings * modes.unsqueeze(-2)).sum(-1)  # (B, R, N)
