"""One GRU layer direction over a whole sequence, in one C++ call each way (``csrc/gru_loop.cpp``).

The input projection of every step is one matrix product before the loop; the loop runs the
recurrence of :func:`rnnkit.functional.steps.gru_update` with the options of rnnkit's GRUCell: layer
norm of both pre-activations (Ba et al. 2016, eq. 20-22), a recurrent dropout mask (Gal & Ghahramani
2016), zoneout (Krueger et al. 2016) and lengths. Per step it does one matrix product and one fused
elementwise pass; backward does the same in reverse, then the weights' gradients as one matrix
product each over all steps. Large arrays come from :mod:`.workspace`. The sibling of
:mod:`.lstm_loop`, with the same limits: float32 and float64 CPU tensors (:func:`available`), first
derivatives only (``RNNKIT_NO_EXTENSION=1`` gives the pure-torch loop, which has higher ones).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.functional import extension, loops, workspace
from rnnkit.functional.loops import carve, contiguous

_pointer, _int = ctypes.c_void_p, ctypes.c_int64
INPUTS = ("gx", "w", "bias_ih", "bias_hh", "gam_ih", "gam_h")  # what the loop reads, as C names
SAVED = ("gates", "ghn", "hs", "hin", "xhat", "rstd_ih", "rhat", "rstd_h")


class _Args(ctypes.Structure):
    """The C struct ``Args`` of csrc/gru_loop.cpp, field for field."""

    _fields_ = [
        *((name, _int) for name in ("B", "T", "H", "blocks")),
        *((name, _pointer) for name in (*INPUTS, "dmask", "zmask", "lens")),
        *((name, ctypes.c_double) for name in ("eps_ih", "eps_h", "zoneout")),
        *((name, _pointer) for name in ("y", "h", *SAVED, "dy", "dgx", "dr", "acc")),
    ]
    names = frozenset(name for name, _ in _fields_)


_LOOP = loops.CompiledLoop("gru", _Args)


def gru_loop_info() -> extension.ExtensionInfo:
    """Builds the extension if this process has not yet, and says how it went (build time, cache)."""
    return _LOOP.info()


def available(x: Tensor) -> bool:
    """True when :func:`gru_loop` would run compiled for this input: float32/float64 on the CPU, in
    eager mode (not under torch.compile, tracing, torch.func transforms or autocast), extension built.
    """
    return _LOOP.available(x)


def gru_loop(
    x: Tensor,
    weight_ih: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    ln_ih_weight: Tensor | None = None,
    ln_hh_weight: Tensor | None = None,
    eps: tuple[float, float] = (1e-5, 1e-5),
    dropout_mask: Tensor | None = None,
    zoneout_masks: Tensor | None = None,
    zoneout: float = 0.0,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Runs a GRU layer over every step; call only where :func:`available` is True.

    Per step t, with N(v) = LN(v) * weight where that layer norm is given and v otherwise:
    u = N_ih(W_ih x_t) + bias_ih;  v = N_hh(W_hh (h * dropout_mask)) + bias_hh;  r, z = sigmoid of
    u + v's first two blocks;  n = tanh(u_n + r v_n);  h_n = n + z (h - n);  h' = h_n + k (h - h_n) with
    the zoneout keep mask k;  steps t >= lengths[b] keep the state and give a zero output.

    Args:
        x: (T, B, D) inputs, time-major (the loop reads one step's rows together).
        weight_ih: (3H, D); weight_hh: (3H, H); h0: (B, H) starting state.
        bias_ih, bias_hh: (3H,) each, or None; a layer norm's bias belongs in the one beside it.
        ln_ih_weight, ln_hh_weight: (3H,), or None where there is no layer norm. ``eps``: the two
            layer norms' epsilons (ih, hh).
        dropout_mask: (B, H) one mask for the sequence, or None.
        zoneout_masks: (T, B, H) keep masks for h at each step (training), or None and a constant
            probability ``zoneout`` (eval mode; 0 for none).
        lengths: (B,) integers, or None when every sequence has T steps.

    Returns (outputs (B, T, H) batch-first, h_T (B, H)).
    """
    tensors = contiguous(x, weight_ih, h0, weight_hh, bias_ih, bias_hh, ln_ih_weight, ln_hh_weight)
    masks = contiguous(dropout_mask, zoneout_masks, None if lengths is None else lengths.to(torch.int64))
    _check(tensors, masks)
    options = (*eps, float(zoneout))
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _GRULoop.apply(*tensors, masks, options)
    with torch.no_grad():
        gx = workspace.take(x.shape[0] * x.shape[1] * weight_hh.shape[0], x.dtype)
        try:
            return _forward(tensors, masks, options, gx, saved={})
        finally:
            workspace.give(gx)


NAMES = ("x", "weight_ih", "h0", "weight_hh", "bias_ih", "bias_hh", "ln_ih_weight", "ln_hh_weight")
NAMES += ("dropout_mask", "zoneout_masks", "lengths")


def _check(tensors, masks) -> None:
    """Refuses any array the loop would misread (see :func:`loops.check`)."""
    (T, B, D), H = tensors[0].shape, tensors[2].shape[-1]
    G = 3 * H
    shapes = ((T, B, D), (G, D), (B, H), (G, H), (G,), (G,), (G,), (G,), (B, H), (T, B, H), (B,))
    arrays = dict(zip(NAMES, (*tensors, *masks), strict=True))
    loops.check("gru_loop", arrays, dict(zip(NAMES, shapes, strict=True)), f"x {(T, B, D)} and h0 {(B, H)}")


def _args(shape: tuple[int, int, int], options: tuple, arrays: dict[str, Tensor | None]) -> _Args:
    """The C struct: sizes (B, T, 3H), options, and every array's address (named as in C; None: null)."""
    B, T, G = shape
    eps_ih, eps_h, zoneout = options
    pointers = _LOOP.pointers(arrays)
    return _Args(B, T, G // 3, loops.blocks(B), eps_ih=eps_ih, eps_h=eps_h, zoneout=zoneout, **pointers)


def _saved_shapes(T: int, B: int, H: int, ln_ih: bool, ln_hh: bool, dropout: bool) -> dict:
    """What forward saves for backward, all time-major: the rows one thread reads at a step lie together."""
    G = 3 * H
    return dict(
        gx=(T, B, G),  # W_ih x; normalised in place (it is then xhat) when ln_ih
        gates=(T, B, G),  # r, z, n after their nonlinearities
        ghn=(T, B, H),  # N_hh(W_hh h)_n + b_hn: what the reset gate multiplies
        hs=(T + 1, B, H),  # h before every step, and after the last
        hin=(T, B, H) if dropout else None,  # h * dropout_mask: the recurrent product's input (else hs)
        rstd_ih=(T, B) if ln_ih else None,
        rhat=(T, B, G) if ln_hh else None,
        rstd_h=(T, B) if ln_hh else None,
    )


def _forward(tensors, masks, options, gx: Tensor, saved: dict) -> tuple[Tensor, Tensor]:
    """Projects x into ``gx`` (T*B*3H elements or more) and runs the loop; fills ``saved`` if given."""
    x, weight_ih, h0, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh = tensors
    T, B, D = x.shape
    G = weight_hh.shape[0]
    gx = gx.reshape(-1)[: T * B * G].view(T, B, G)
    torch.mm(x.view(T * B, D), weight_ih.T, out=gx.view(T * B, G))  # every step's input projection at once
    y, h = x.new_empty(B, T, G // 3), h0.clone()  # h: the running state
    if saved:
        saved["hs"][0] = h0
        saved["xhat"] = gx if ln_ih is not None else None
    inputs = dict(gx=gx, w=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh, gam_ih=ln_ih, gam_h=ln_hh)
    arrays = dict(inputs, dmask=masks[0], zmask=masks[1], lens=masks[2], y=y, h=h)
    arrays.update({name: t for name, t in saved.items() if name != "gx"})
    _LOOP.call("forward", _args((B, T, G), options, arrays), x.dtype)
    return y, h


class _GRULoop(torch.autograd.Function):
    """Autograd of :func:`gru_loop`: forward saves gates and normalised values, backward is one call."""

    @staticmethod
    def forward(ctx, *inputs):
        *tensors, masks, options = inputs
        x, h0 = tensors[0], tensors[2]
        (T, B, _), H = x.shape, h0.shape[1]
        shapes = _saved_shapes(T, B, H, tensors[6] is not None, tensors[7] is not None, masks[0] is not None)
        arena = workspace.take(loops.numel(shapes), x.dtype)
        workspace.give_when_dead(ctx, arena)  # when autograd drops this graph
        saved = carve(arena, shapes)
        y, h = _forward(tensors, masks, options, saved["gx"], saved)
        weights = (tensors[1], tensors[3], *tensors[6:8])  # weight_ih, weight_hh, the layer norms' gains
        ctx.save_for_backward(x, *weights, *masks, *(saved[name] for name in SAVED))
        ctx.options = options
        return y, h

    @staticmethod
    def backward(ctx, dy, dh):
        _LOOP.refuse_double_backward()
        return _GRULoop._backward(ctx, dy, dh)

    @staticmethod
    @once_differentiable
    def _backward(ctx, dy, dh):
        x, weight_ih, weight_hh, ln_ih, ln_hh, *rest = ctx.saved_tensors
        masks, saved = rest[:3], dict(zip(SAVED, rest[3:], strict=True))
        (T, B, D), G = x.shape, weight_hh.shape[0]
        H = G // 3
        scratch = workspace.take(2 * T * B * G, x.dtype)
        try:
            dgx = scratch[: T * B * G].view(T, B, G)  # dL/d(W_ih x)
            dr = scratch[T * B * G : 2 * T * B * G].view(T, B, G)  # dL/d(W_hh h): differs on n (reset gate)
            dh0 = dh.contiguous().clone()  # dL/dh_T in, dL/dh0 out
            acc = dr.new_zeros(loops.blocks(B), 4 * G)  # per block
            dy = dy.contiguous()  # held here: the struct keeps only addresses
            arrays = dict(
                w=weight_hh, gam_ih=ln_ih, gam_h=ln_hh, dmask=masks[0], zmask=masks[1], lens=masks[2]
            )
            arrays.update(**saved, dy=dy, dgx=dgx, dr=dr, h=dh0, acc=acc)
            args = _args((B, T, G), ctx.options, arrays)
            assert args.blocks == acc.shape[0]
            _LOOP.call("backward", args, x.dtype)
            needed = ctx.needs_input_grad
            dgx2, x2 = dgx.view(T * B, G), x.view(T * B, D)
            dx = (dgx2 @ weight_ih).view(T, B, D) if needed[0] else None  # every step in one product
            dw_ih = dgx2.T @ x2 if needed[1] else None
            hin = saved["hin"] if saved["hin"] is not None else saved["hs"][:T]  # (T, B, H)
            dw_hh = dr.view(T * B, G).T @ hin.reshape(T * B, H) if needed[3] else None
        finally:
            workspace.give(scratch)
        dbias_ih, dbias_hh, dln_ih, dln_hh = acc.sum(0).split([G, G, G, G])
        grads = (dx, dw_ih, dh0, dw_hh, dbias_ih, dbias_hh, dln_ih, dln_hh)
        return *(g if need else None for g, need in zip(grads, needed[:8], strict=True)), None, None
