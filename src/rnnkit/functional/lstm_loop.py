"""One LSTM layer direction over a whole sequence, in one C++ call each way (``csrc/lstm_loop.cpp``).

The input projection of every step is one matrix product before the loop; the loop runs the
recurrence of :func:`rnnkit.functional.steps.lstm_update` with the options of rnnkit's LSTMCell:
layer norm of both pre-activations and of the cell (Ba et al. 2016, eq. 20-22), a recurrent dropout
mask (Gal & Ghahramani 2016), zoneout (Krueger et al. 2016) and lengths. Per step it does one matrix
product and one fused elementwise pass; backward does the same in reverse, then the weights'
gradients as one matrix product each over all steps. Large arrays come from :mod:`.workspace`.

Only float32 and float64 CPU tensors go through it; :func:`available` says whether a call would.
First derivatives only: a backward with ``create_graph=True`` raises (rather than give a second
derivative that misses this op); ``RNNKIT_NO_EXTENSION=1`` gives the pure-torch loop, which has them.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.functional import extension, loops, workspace
from rnnkit.functional.loops import carve, contiguous

_pointer, _int = ctypes.c_void_p, ctypes.c_int64
INPUTS = ("gx", "w", "bias", "gam_ih", "gam_h", "gam_c", "bet_c")  # what the loop reads, as C names
SAVED = ("gates", "cs", "tc", "hin", "xhat", "rstd_ih", "rhat", "rstd_h", "chat", "rstd_c")


class _Args(ctypes.Structure):
    """The C struct ``Args`` of csrc/lstm_loop.cpp, field for field."""

    _fields_ = [
        *((name, _int) for name in ("B", "T", "H", "blocks")),
        *((name, _pointer) for name in (*INPUTS, "dmask", "zmask", "lens")),
        *((name, ctypes.c_double) for name in ("eps_ih", "eps_h", "eps_c", "zoneout")),
        *((name, _pointer) for name in ("y", "h", "c", *SAVED, "dy", "dgx", "dr", "acc")),
    ]
    names = frozenset(name for name, _ in _fields_)


_LOOP = loops.CompiledLoop("lstm", _Args)


def lstm_loop_info() -> extension.ExtensionInfo:
    """Builds the extension if this process has not yet, and says how it went (build time, cache)."""
    return _LOOP.info()


def available(x: Tensor) -> bool:
    """True when :func:`lstm_loop` would run compiled for this input: float32/float64 on the CPU, in
    eager mode (not under torch.compile, tracing, torch.func transforms or autocast), extension built.
    """
    return _LOOP.available(x)


def lstm_loop(
    x: Tensor,
    weight_ih: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None = None,
    ln_ih_weight: Tensor | None = None,
    ln_hh_weight: Tensor | None = None,
    ln_c_weight: Tensor | None = None,
    ln_c_bias: Tensor | None = None,
    eps: tuple[float, float, float] = (1e-5, 1e-5, 1e-5),
    dropout_mask: Tensor | None = None,
    zoneout_masks: Tensor | None = None,
    zoneout: float = 0.0,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Runs an LSTM layer over every step; call only where :func:`available` is True.

    Per step t, with N(v) = LN(v) * weight where that layer norm is given and v otherwise:
    a = N_ih(W_ih x_t) + N_hh(W_hh (h * dropout_mask)) + bias;  i, f, g, o = sigmoid, sigmoid, tanh,
    sigmoid of a's four blocks;  c_n = f c + i g;  h_n = o tanh(LN_c(c_n)) (LN with ln_c_weight and
    ln_c_bias, or the identity);  h' = h_n + k_h (h - h_n) and c' = c_n + k_c (c - c_n) with the zoneout
    keep masks k;  steps t >= lengths[b] keep the state and give a zero output.

    Args:
        x: (T, B, D) inputs, time-major (the loop reads one step's rows together).
        weight_ih: (4H, D); weight_hh: (4H, H); h0, c0: (B, H) starting state.
        bias: (4H,) every additive bias of the gates, summed: b_ih + b_hh (+ the layer norms' biases).
        ln_ih_weight, ln_hh_weight: (4H,); ln_c_weight, ln_c_bias: (H,); None where there is no
            layer norm. ``eps``: the three layer norms' epsilons (ih, hh, c).
        dropout_mask: (B, H) one mask for the sequence, or None.
        zoneout_masks: (T, 2, B, H) keep masks for h then c at each step (training), or None and a
            constant probability ``zoneout`` (eval mode; 0 for none).
        lengths: (B,) integers, or None when every sequence has T steps.

    Returns (outputs (B, T, H) batch-first, h_T (B, H), c_T (B, H)).
    """
    tensors = contiguous(
        x, weight_ih, h0, c0, weight_hh, bias, ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias
    )
    masks = contiguous(dropout_mask, zoneout_masks, None if lengths is None else lengths.to(torch.int64))
    _check(tensors, masks)
    options = (*eps, float(zoneout))
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _LSTMLoop.apply(*tensors, masks, options)
    with torch.no_grad():
        gx = workspace.take(x.shape[0] * x.shape[1] * weight_hh.shape[0], x.dtype)
        try:
            return _forward(tensors, masks, options, gx, saved={})
        finally:
            workspace.give(gx)


NAMES = ("x", "weight_ih", "h0", "c0", "weight_hh", "bias", "ln_ih_weight", "ln_hh_weight", "ln_c_weight")
NAMES += ("ln_c_bias", "dropout_mask", "zoneout_masks", "lengths")


def _check(tensors, masks) -> None:
    """Refuses any array the loop would misread (see :func:`loops.check`)."""
    (T, B, D), H = tensors[0].shape, tensors[2].shape[-1]
    G = 4 * H
    shapes = (
        (T, B, D),
        (G, D),
        (B, H),
        (B, H),
        (G, H),
        (G,),
        (G,),
        (G,),
        (H,),
        (H,),
        (B, H),
        (T, 2, B, H),
        (B,),
    )
    arrays = dict(zip(NAMES, (*tensors, *masks), strict=True))
    loops.check("lstm_loop", arrays, dict(zip(NAMES, shapes, strict=True)), f"x {(T, B, D)} and h0 {(B, H)}")


def _args(shape: tuple[int, int, int], options: tuple, arrays: dict[str, Tensor | None]) -> _Args:
    """The C struct: sizes (B, T, 4H), options, and every array's address (named as in C; None: null)."""
    B, T, G = shape
    eps_ih, eps_h, eps_c, zoneout = options
    pointers = _LOOP.pointers(arrays)
    return _Args(
        B, T, G // 4, loops.blocks(B), eps_ih=eps_ih, eps_h=eps_h, eps_c=eps_c, zoneout=zoneout, **pointers
    )


def _saved_shapes(T: int, B: int, H: int, ln_ih: bool, ln_hh: bool, ln_c: bool) -> dict:
    """What forward saves for backward, all time-major: the rows one thread reads at a step lie together."""
    G = 4 * H
    return dict(
        gx=(T, B, G),  # W_ih x; normalised in place (it is then xhat) when ln_ih
        gates=(T, B, G),  # i, f, g, o after their nonlinearities
        cs=(T + 1, B, H),  # c before every step, and after the last
        tc=(T, B, H),  # tanh(LN_c(c_n))
        hin=(T, B, H),  # h * dropout_mask: the recurrent product's input
        rstd_ih=(T, B) if ln_ih else None,
        rhat=(T, B, G) if ln_hh else None,
        rstd_h=(T, B) if ln_hh else None,
        chat=(T, B, H) if ln_c else None,
        rstd_c=(T, B) if ln_c else None,
    )


def _forward(tensors, masks, options, gx: Tensor, saved: dict) -> tuple[Tensor, Tensor, Tensor]:
    """Projects x into ``gx`` (T*B*4H elements or more) and runs the loop; fills ``saved`` if given."""
    x, weight_ih, h0, c0, weight_hh, bias, ln_ih, ln_hh, ln_c, ln_c_bias = tensors
    T, B, D = x.shape
    G = weight_hh.shape[0]
    gx = gx.reshape(-1)[: T * B * G].view(T, B, G)
    torch.mm(x.view(T * B, D), weight_ih.T, out=gx.view(T * B, G))  # every step's input projection at once
    y, h, c = x.new_empty(B, T, G // 4), h0.clone(), c0.clone()  # h, c: the running state
    if saved:
        saved["cs"][0] = c0
        saved["xhat"] = gx if ln_ih is not None else None
    inputs = dict(gx=gx, w=weight_hh, bias=bias, gam_ih=ln_ih, gam_h=ln_hh, gam_c=ln_c, bet_c=ln_c_bias)
    arrays = dict(inputs, dmask=masks[0], zmask=masks[1], lens=masks[2], y=y, h=h, c=c)
    arrays.update({name: t for name, t in saved.items() if name != "gx"})
    _LOOP.call("forward", _args((B, T, G), options, arrays), x.dtype)
    return y, h, c


class _LSTMLoop(torch.autograd.Function):
    """Autograd of :func:`lstm_loop`: forward saves gates and normalised values, backward is one call."""

    @staticmethod
    def forward(ctx, *inputs):
        *tensors, masks, options = inputs
        x, h0 = tensors[0], tensors[2]
        (T, B, _), H = x.shape, h0.shape[1]
        shapes = _saved_shapes(T, B, H, *(t is not None for t in tensors[6:9]))
        arena = workspace.take(loops.numel(shapes), x.dtype)
        workspace.give_when_dead(ctx, arena)  # when autograd drops this graph
        saved = carve(arena, shapes)
        y, h, c = _forward(tensors, masks, options, saved["gx"], saved)
        weights = (tensors[1], tensors[4], *tensors[6:9])  # weight_ih, weight_hh, the layer norms' gains
        ctx.save_for_backward(x, *weights, *masks, *(saved[name] for name in SAVED))
        ctx.options = options
        return y, h, c

    @staticmethod
    def backward(ctx, dy, dh, dc):
        _LOOP.refuse_double_backward()
        return _LSTMLoop._backward(ctx, dy, dh, dc)

    @staticmethod
    @once_differentiable
    def _backward(ctx, dy, dh, dc):
        x, weight_ih, weight_hh, ln_ih, ln_hh, ln_c, *rest = ctx.saved_tensors
        masks, saved = rest[:3], dict(zip(SAVED, rest[3:], strict=True))
        (T, B, D), G = x.shape, weight_hh.shape[0]
        H = G // 4
        separate = ln_ih is not None or ln_hh is not None  # else dL/d(W_ih x) = dL/d(W_hh h)
        scratch = workspace.take(T * B * G * (2 if separate else 1), x.dtype)
        try:
            dgx = scratch[: T * B * G].view(T, B, G)  # dL/d(W_ih x)
            dr = scratch[T * B * G : 2 * T * B * G].view(T, B, G) if separate else dgx  # dL/d(W_hh h)
            dh0, dc0 = dh.contiguous().clone(), dc.contiguous().clone()  # dL/dh_T in, dL/dh0 out
            acc = dr.new_zeros(loops.blocks(B), 3 * G + 2 * H)  # per block
            dy = dy.contiguous()  # held here: the struct keeps only addresses
            arrays = dict(w=weight_hh, gam_ih=ln_ih, gam_h=ln_hh, gam_c=ln_c, dmask=masks[0], zmask=masks[1])
            arrays.update(lens=masks[2], **saved, dy=dy, dgx=dgx, dr=dr, h=dh0, c=dc0, acc=acc)
            args = _args((B, T, G), ctx.options, arrays)
            assert args.blocks == acc.shape[0]
            _LOOP.call("backward", args, x.dtype)
            needed = ctx.needs_input_grad
            dgx2, x2 = dgx.view(T * B, G), x.view(T * B, D)
            dx = (dgx2 @ weight_ih).view(T, B, D) if needed[0] else None  # every step in one product
            dw_ih = dgx2.T @ x2 if needed[1] else None
            dw_hh = dr.view(T * B, G).T @ saved["hin"].view(T * B, H) if needed[4] else None
        finally:
            workspace.give(scratch)
        dbias, dln_ih, dln_hh, dln_c_w, dln_c_b = acc.sum(0).split([G, G, G, H, H])
        grads = (dx, dw_ih, dh0, dc0, dw_hh, dbias, dln_ih, dln_hh, dln_c_w, dln_c_b)
        return *(g if need else None for g, need in zip(grads, needed[:10], strict=True)), None, None
