"""One recurrent layer direction over a whole sequence, in one C++ call each way, for every cell kind.

The input projection of every step is one matrix product before the loop; the loop (``driver.h``,
instantiated per cell in ``<kind>_loop.cpp``) runs the recurrence of the cell's update in
:mod:`rnnkit.functional.steps` with the options of rnnkit's cells: layer norm of both
pre-activations (and of the LSTM's cell, Ba et al. 2016, eq. 20-22), a recurrent dropout mask (Gal &
Ghahramani 2016), zoneout (Krueger et al. 2016) and lengths. Per step it does one matrix product and
one fused elementwise pass; backward does the same in reverse, then the weights' gradients as one
matrix product each over all steps. Large arrays come from :mod:`.workspace`; the kinds, their
libraries and the C struct from :mod:`.binding`.

Only float32 and float64 CPU tensors go through it; :func:`available` says whether a call would.
First derivatives only: a backward with ``create_graph=True`` raises (rather than give a second
derivative that misses this op); ``RNNKIT_NO_EXTENSION=1`` gives the pure-torch loop, which has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.errors import ConfigError, ShapeError, unknown_name
from rnnkit.kernels import binding, build, workspace
from rnnkit.kernels.binding import KINDS, carve, contiguous

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih_weight", "ln_hh_weight", "ln_c_weight")
WEIGHTS += ("ln_c_bias",)


def loop_info(kind: str) -> build.ExtensionInfo:
    """Builds the library of ``kind`` ("lstm", "gru", "rnn_tanh", "rnn_relu") if this process has not
    yet, and says how it went: available, why not, build or load time, cache folder."""
    _spec(kind)
    return binding.library(kind).info


def available(kind: str, x: Tensor) -> bool:
    """True when :func:`time_loop` would run compiled for this input: float32/float64 on the CPU, in
    eager mode (not under torch.compile, tracing, torch.func transforms or autocast), library built.
    """
    if x.device.type != "cpu" or x.dtype not in binding.SUFFIX or build.disabled():
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.is_autocast_enabled("cpu"):
        return False
    if torch._C._are_functorch_transforms_active():  # vmap/grad would need a functorch rule
        return False
    return loop_info(kind).available


def time_loop(
    kind: str,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    state: Sequence[Tensor],
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    ln_ih_weight: Tensor | None = None,
    ln_hh_weight: Tensor | None = None,
    ln_c_weight: Tensor | None = None,
    ln_c_bias: Tensor | None = None,
    eps: tuple[float, float, float] = (1e-5, 1e-5, 1e-5),
    dropout_mask: Tensor | None = None,
    zoneout_masks: Tensor | None = None,
    zoneout: float = 0.0,
    lengths: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Runs a layer of cell ``kind`` over every step; call only where :func:`available` is True.

    Per step t, with N(v) = LN(v) * weight where that layer norm is given and v otherwise:
    u = N_ih(W_ih x_t) + bias_ih;  v = N_hh(W_hh (h * dropout_mask)) + bias_hh;  the cell's update
    of (u, v, state) gives h_n (and the LSTM's c_n, with LN_c by ln_c_weight and ln_c_bias);
    h' = h_n + k_h (h - h_n) (and c' likewise) with the zoneout keep masks k;  steps t >= lengths[b]
    keep the state and give a zero output.

    Args:
        kind: "lstm", "gru", "rnn_tanh" or "rnn_relu" (:data:`binding.KINDS`).
        x: (T, B, D) inputs, time-major (the loop reads one step's rows together).
        weight_ih: (G*H, D); weight_hh: (G*H, H), G the kind's gates (4, 3, 1).
        state: the starting state's fields, (B, H) each: (h, c) for "lstm", (h,) otherwise.
        bias_ih, bias_hh: (G*H,) each, or None; a layer norm's bias belongs in the one beside it.
        ln_ih_weight, ln_hh_weight: (G*H,); ln_c_weight, ln_c_bias: (H,), "lstm" only; None where
            there is no layer norm. ``eps``: the layer norms' epsilons (ih, hh, c).
        dropout_mask: (B, H) one mask for the sequence, or None.
        zoneout_masks: (T, S, B, H) keep masks for each of the S state fields at each step (training),
            or None and a constant probability ``zoneout`` (eval mode; 0 for none).
        lengths: (B,) integers, or None when every sequence has T steps.

    Returns (outputs (B, T, H) batch-first, the final state's fields (B, H) each).
    """
    weights = (weight_ih, weight_hh, bias_ih, bias_hh, ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias)
    tensors = contiguous(x, *weights, *state)
    masks = contiguous(dropout_mask, zoneout_masks, None if lengths is None else lengths.to(torch.int64))
    _check(kind, tensors, masks)
    if not KINDS[kind].split:  # the step adds u + v, so one bias, b_ih + b_hh, added once, is enough
        tensors = (*tensors[:3], _folded(*tensors[3:5]), None, *tensors[5:])
    options = (*eps, float(zoneout))
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        y, *final = _TimeLoop.apply(kind, masks, options, *tensors)
        return y, tuple(final)
    with torch.no_grad():
        gx = workspace.take(x.shape[0] * x.shape[1] * weight_hh.shape[0], x.dtype)
        try:
            return _forward(kind, tensors, masks, options, gx, saved={})
        finally:
            workspace.give(gx)


def _folded(bias_ih: Tensor | None, bias_hh: Tensor | None) -> Tensor | None:
    if bias_ih is None or bias_hh is None:
        return bias_hh if bias_ih is None else bias_ih
    return bias_ih + bias_hh


def _spec(kind: str) -> binding.LoopSpec:
    if kind not in KINDS:
        raise unknown_name("compiled loop kind", kind, KINDS)
    return KINDS[kind]


def _check(kind: str, tensors: tuple, masks: tuple) -> None:
    """Refuses any array the loop would misread (see :func:`binding.check`)."""
    spec = _spec(kind)
    S = len(spec.state)
    if len(tensors) != 9 + S:
        got = len(tensors) - 9
        raise ShapeError(f"{kind}_loop: the state must have {S} field(s) {spec.state}, got {got}")
    if not spec.cell_norm and any(t is not None for t in tensors[7:9]):
        raise ConfigError(f"{kind}_loop: ln_c_weight and ln_c_bias are the LSTM's; leave them None")
    (T, B, D), H = tensors[0].shape, tensors[9].shape[-1]
    G = spec.gates * H
    names = ("x", *WEIGHTS, *(f"{f}0" for f in spec.state), "dropout_mask", "zoneout_masks", "lengths")
    shapes = ((T, B, D), (G, D), (G, H), (G,), (G,), (G,), (G,), (H,), (H,), *[(B, H)] * S, (B, H))
    shapes += ((T, S, B, H), (B,))
    arrays = dict(zip(names, (*tensors, *masks), strict=True))
    context = f"x {(T, B, D)} and h0 {(B, H)}"
    binding.check(f"{kind}_loop", arrays, dict(zip(names, shapes, strict=True)), context)


def _args(shape: tuple[int, int, int], options: tuple, arrays: dict[str, Tensor | None]) -> binding.Args:
    """The C struct: sizes (B, T, H), options, and every array's address (named as in C; None: null)."""
    B, T, H = shape
    eps_ih, eps_h, eps_c, zoneout = options
    pointers = binding.pointers(arrays)
    return binding.Args(
        B, T, H, binding.blocks(B), eps_ih=eps_ih, eps_h=eps_h, eps_c=eps_c, zoneout=zoneout, **pointers
    )


def _saved_shapes(kind: str, T: int, B: int, H: int, ln: tuple[bool, bool, bool], dropout: bool) -> dict:
    """What forward saves for backward, all time-major: the rows one thread reads at a step lie together."""
    spec = KINDS[kind]
    G = spec.gates * H
    ln_ih, ln_hh, ln_c = ln
    return dict(
        gx=(T, B, G),  # W_ih x; normalised in place (it is then xhat) when ln_ih
        gates=(T, B, G),  # the gates after their nonlinearities
        aux=(T, B, H) if spec.aux else None,  # LSTM: tanh(LN_c(c_n)); GRU: what the reset gate multiplies
        hs=(T + 1, B, H),  # h before every step, and after the last
        cs=(T + 1, B, H) if len(spec.state) > 1 else None,  # the same for c
        hin=(T, B, H) if dropout else None,  # h * dropout_mask: the recurrent product's input (else hs)
        rstd_ih=(T, B) if ln_ih else None,
        rhat=(T, B, G) if ln_hh else None,
        rstd_h=(T, B) if ln_hh else None,
        chat=(T, B, H) if ln_c else None,
        rstd_c=(T, B) if ln_c else None,
    )


def _forward(kind: str, tensors, masks, options, gx: Tensor, saved: dict) -> tuple[Tensor, tuple]:
    """Projects x into ``gx`` (T*B*G elements or more) and runs the loop; fills ``saved`` if given."""
    x, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, ln_c, ln_c_bias, *state = tensors
    T, B, D = x.shape
    G, H = weight_hh.shape
    gx = gx.reshape(-1)[: T * B * G].view(T, B, G)
    torch.mm(x.view(T * B, D), weight_ih.T, out=gx.view(T * B, G))  # every step's input projection at once
    y, final = x.new_empty(B, T, H), [s.clone() for s in state]  # final: the running state
    if saved:
        for name, s in zip(("hs", "cs"), state, strict=False):
            saved[name][0] = s
        saved["xhat"] = gx if ln_ih is not None else None
    inputs = dict(gx=gx, w=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh, gam_ih=ln_ih, gam_h=ln_hh)
    arrays = dict(inputs, gam_c=ln_c, bet_c=ln_c_bias, dmask=masks[0], zmask=masks[1], lens=masks[2], y=y)
    arrays.update(zip(("h", "c"), final, strict=False))
    arrays.update({name: t for name, t in saved.items() if name != "gx"})
    binding.library(kind).call(kind, "forward", _args((B, T, H), options, arrays), x.dtype)
    return y, tuple(final)


class _TimeLoop(torch.autograd.Function):
    """Autograd of :func:`time_loop`: forward saves gates and normalised values, backward is one call."""

    @staticmethod
    def forward(ctx, kind, masks, options, *tensors):
        x, weight_ih, weight_hh, _, _, ln_ih, ln_hh, ln_c, _ = tensors[:9]  # biases and beta_c: not saved
        (T, B, _), H = x.shape, weight_hh.shape[1]
        norms = tuple(t is not None for t in (ln_ih, ln_hh, ln_c))
        shapes = _saved_shapes(kind, T, B, H, norms, masks[0] is not None)
        arena = workspace.take(binding.numel(shapes), x.dtype)
        workspace.give_when_dead(ctx, arena)  # when autograd drops this graph
        saved = carve(arena, shapes)
        y, final = _forward(kind, tensors, masks, options, saved["gx"], saved)
        weights = (weight_ih, weight_hh, ln_ih, ln_hh, ln_c)
        ctx.save_for_backward(x, *weights, *masks, *(saved[name] for name in binding.SAVED))
        ctx.kind, ctx.options = kind, options
        return y, *final

    @staticmethod
    def backward(ctx, dy, *dstate):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative would silently miss the op
            raise RuntimeError(
                f"rnnkit's compiled {ctx.kind.upper()} loop has first derivatives only, and this backward "
                "was asked to build a graph for a second one (create_graph=True). Set "
                "RNNKIT_NO_EXTENSION=1 to run the pure-torch loop, which supports higher derivatives."
            )
        return None, None, None, *_TimeLoop._backward(ctx, dy, *dstate)

    @staticmethod
    @once_differentiable
    def _backward(ctx, dy, *dstate):
        x, weight_ih, weight_hh, ln_ih, ln_hh, ln_c, *rest = ctx.saved_tensors
        masks, saved = rest[:3], dict(zip(binding.SAVED, rest[3:], strict=True))
        spec = KINDS[ctx.kind]
        (T, B, D), (G, H) = x.shape, weight_hh.shape
        separate = spec.split or ln_ih is not None or ln_hh is not None  # else dL/d(W_ih x) = dL/d(W_hh h)
        scratch = workspace.take(T * B * G * (2 if separate else 1), x.dtype)
        try:
            dgx = scratch[: T * B * G].view(T, B, G)  # dL/d(W_ih x)
            dr = scratch[T * B * G : 2 * T * B * G].view(T, B, G) if separate else dgx  # dL/d(W_hh h)
            dstate = [d.contiguous().clone() for d in dstate]  # dL/d(final state) in, dL/d(state) out
            acc = dr.new_zeros(binding.blocks(B), spec.acc_width(H))  # per block
            dy = dy.contiguous()  # held here: the struct keeps only addresses
            arrays = dict(w=weight_hh, gam_ih=ln_ih, gam_h=ln_hh, gam_c=ln_c, dmask=masks[0], zmask=masks[1])
            arrays.update(lens=masks[2], **saved, dy=dy, dgx=dgx, dr=dr, acc=acc)
            arrays.update(zip(("h", "c"), dstate, strict=False))
            args = _args((B, T, H), ctx.options, arrays)
            assert args.blocks == acc.shape[0]
            binding.library(ctx.kind).call(ctx.kind, "backward", args, x.dtype)
            needed = ctx.needs_input_grad[3:]
            dgx2 = dgx.view(T * B, G)
            dx = (dgx2 @ weight_ih).view(T, B, D) if needed[0] else None  # every step in one product
            dw_ih = dgx2.T @ x.view(T * B, D) if needed[1] else None
            hin = saved["hin"] if saved["hin"] is not None else saved["hs"][:T]  # (T, B, H)
            dw_hh = dr.view(T * B, G).T @ hin.reshape(T * B, H) if needed[2] else None
        finally:
            workspace.give(scratch)
        sums = acc.sum(0).split([G] * (4 if spec.split else 3) + ([H, H] if spec.cell_norm else []))
        dbias_ih, dbias_hh = sums[0], sums[1] if spec.split else None
        dln_ih, dln_hh, *dln_c = sums[2:] if spec.split else sums[1:]
        grads = (dx, dw_ih, dw_hh, dbias_ih, dbias_hh, dln_ih, dln_hh, *(dln_c or (None, None)), *dstate)
        return tuple(g if need else None for g, need in zip(grads, needed, strict=True))
