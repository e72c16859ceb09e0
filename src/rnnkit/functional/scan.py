"""The linear recurrence h_t = a_t * h_{t-1} + b_t over a whole sequence, two ways.

``sequential_scan`` is a loop of T elementwise steps; ``log_space_scan`` (Heinsen 2023) computes every
step at once from a cumulative sum and a cumulative log-sum-exp. They agree up to float rounding.
Which is faster depends on the device: torch's CPU ``logcumsumexp`` is a scalar loop and the log-space
form needs about 15 full-size passes, so on CPU the loop wins (it has no matrix product per step);
on a GPU those passes run in parallel and the scan wins (benchmarks/mingru.py, benchmarks/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.errors import ShapeError, unknown_name

SCANS = ("auto", "sequential", "parallel")


def check_scan(method: str) -> str:
    """The scan name if it is one of SCANS, else a ConfigError that suggests the nearest."""
    if method not in SCANS:
        raise unknown_name("scan", method, SCANS)
    return method


def resolve_scan(method: str, device: torch.device) -> str:
    """ "auto" -> "sequential" on CPU, "parallel" on any other device; the other names as they are."""
    if check_scan(method) == "auto":
        return "sequential" if torch.device(device).type == "cpu" else "parallel"
    return method


def check_coefficients(a: Tensor, b: Tensor, h0: Tensor) -> None:
    """a and b must both be (B, T, H), and h0 (B, H)."""
    if a.dim() != 3 or a.shape != b.shape or h0.shape != (a.shape[0], a.shape[2]):
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in (("a", a), ("b", b), ("h0", h0)))
        raise ShapeError(f"the scan needs a and b of one shape (B, T, H) and h0 (B, H); got {shapes}")


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """a, b (B, T, H), h0 (B, H) -> every h (B, T, H), one elementwise step at a time.

    The loop records no autograd graph: its backward is the same recurrence run in reverse, so each
    step costs one kernel forward and one backward (2-10x less per step than autograd through T
    ``addcmul``s). First derivatives only (``once_differentiable``).
    """
    check_coefficients(a, b, h0)
    return _SequentialScan.apply(a, b, h0)


class _SequentialScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t. With g_t = dL/dh_t + a_{t+1} g_{t+1} (the total gradient reaching h_t):
    dL/db_t = g_t, dL/da_t = g_t h_{t-1}, dL/dh0 = a_0 g_0 (steps counted from 0)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = torch.empty_like(b)  # (B, T, H)
        prev = h0
        # unbind, never a[:, t]: each step writes its slice of h in place (see benchmarks/README.md)
        for a_t, b_t, h_t in zip(a.unbind(1), b.unbind(1), h.unbind(1), strict=True):  # T x (B, H)
            prev = torch.addcmul(b_t, a_t, prev, out=h_t)  # b_t + a_t * h_{t-1}
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        a, h0, h = ctx.saved_tensors
        g = torch.empty_like(grad_h)  # (B, T, H), g_t as above
        gs, grads, coefficients = g.unbind(1), grad_h.unbind(1), a.unbind(1)  # T x (B, H) each
        gs[-1].copy_(grads[-1])
        for t in range(len(gs) - 2, -1, -1):
            torch.addcmul(grads[t], coefficients[t + 1], gs[t + 1], out=gs[t])
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_a = g * torch.cat([h0.unsqueeze(1), h[:, :-1]], 1)  # (B, T, H): g_t h_{t-1}
        if ctx.needs_input_grad[2]:
            grad_h0 = a[:, 0] * g[:, 0]  # (B, H)
        return grad_a, g, grad_h0


def log_space_scan(log_a: Tensor, log_b: Tensor, log_h0: Tensor) -> Tensor:
    """log a, log b (B, T, H), log h0 (B, H) -> every h (B, T, H), all steps at once.

    Heinsen 2023, "Efficient parallelization of a ubiquitous sequential computation" (arXiv
    2311.06281), as Feng et al. 2024 use it (appendix B): with h0 as step 0 (b_0 = h0) and
    a* = cumsum(log a) (a*_0 = 0),
    log h_t = a*_t + logcumsumexp(log b - a*)_t. It needs a > 0, b >= 0 and h0 >= 0; zeros are
    fine (log 0 = -inf adds nothing) except where a gradient must pass through log 0 (it is
    infinite there). Precision: the two terms grow like |a*_T|, so float32 loses about
    |a*_T| * 6e-8 of relative accuracy on long sequences with small a.
    """
    check_coefficients(log_a, log_b, log_h0)
    a_star = F.pad(torch.cumsum(log_a, 1), (0, 0, 1, 0))  # (B, T+1, H), a*_0 = 0
    log_values = torch.cat([log_h0.unsqueeze(1), log_b], 1)  # (B, T+1, H)
    log_h = a_star + torch.logcumsumexp(log_values - a_star, 1)  # (B, T+1, H)
    return log_h[:, 1:].exp()  # (B, T, H)


def loggable(x: Tensor) -> bool:
    """True when log x serves the log-space scan: x >= 0, and x > 0 if x needs a gradient."""
    return bool((x > 0).all() if x.requires_grad else (x >= 0).all())


def scan(a: Tensor, b: Tensor, h0: Tensor, method: str = "auto") -> Tensor:
    """a, b (B, T, H), h0 (B, H) -> every h (B, T, H) of h_t = a_t * h_{t-1} + b_t.

    method: "sequential", "parallel" (the log-space scan), or "auto": parallel unless ``a`` is on the
    CPU. The parallel scan takes logs, so it runs only when a > 0, b >= 0 and h0 >= 0 (strictly
    positive where they need a gradient); otherwise this falls back to the sequential scan, which
    takes any signs. Checking costs one pass over each input (and a device sync on a GPU).

    Example:
        >>> a, b, h0 = torch.rand(2, 10, 4), torch.rand(2, 10, 4), torch.zeros(2, 4)
        >>> torch.allclose(scan(a, b, h0, "parallel"), scan(a, b, h0, "sequential"))   # True
    """
    check_coefficients(a, b, h0)
    if resolve_scan(method, a.device) == "parallel" and bool((a > 0).all()) and loggable(b) and loggable(h0):
        return log_space_scan(a.log(), b.log(), h0.log())
    return sequential_scan(a, b, h0)
