"""Streamer: run an rnnkit RNN, LSTM or GRU one time step at a time, for online inference.

Where rnnkit's C++ kernels build, a step is one call into native code (``rnnkit.kernels.stream``,
path "native"): every layer's matrix-vector products over weights packed once at construction, the
gates fused right after them, the state updated in place. Elsewhere (no compiler,
``RNNKIT_NO_EXTENSION=1``, ``native=False``) it is the pure-torch step below (path "fast"), and
with ``layer_norm=True`` the cell's own maths (path "cell").

Calling a layer with T=1 at every step pays for its sequence machinery each time (checks, state
stacking and, for torch.nn.LSTM, a oneDNN weight reorder: about 2 ms against a 63 µs matrix-vector
product at hidden 512, see benchmarks/README.md). A Streamer does that work once. At construction it checks
the layer, snapshots its weights as one concatenated [W_ih | W_hh] per layer with the two biases
summed, allocates every buffer a step writes, and binds the step's torch calls, ``out=`` and
in-place targets included, into a flat list. A step copies x_t in and runs that list under
torch.inference_mode: one GEMV per layer (three for a GRU, whose reset gate multiplies W_hn h
alone) and a few elementwise ops, with no tensor allocated but the y_t it returns (none at all when
the caller passes ``out=``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.checks import check_input, check_state
from rnnkit.errors import ConfigError, DTypeError, ShapeError
from rnnkit.kernels import stream
from rnnkit.layers.rnn import GRU, LSTM, RNN

Op = Callable[[], object]


class _Slots(NamedTuple):
    """Views one layer's step reads and writes; x and h sit side by side in xh."""

    x: Tensor  # (B, D_l): the layer's input, the output slot of the layer below
    h: Tensor  # (B, H)
    xh: Tensor  # (B, D_l + H): [x, h], the one operand of the concatenated GEMV
    c: Tensor | None  # (B, H) for an LSTM
    out: Tensor  # (B, H): h, or h + x where a residual applies


class Streamer:
    """Steps a unidirectional rnnkit.RNN/LSTM/GRU through a stream, one x_t at a time.

    Args:
        layer: an ``rnnkit.RNN``, ``LSTM`` or ``GRU``, any ``num_layers``, not bidirectional (a stream
            cannot read the future). Its weights are snapshotted: after training call ``refresh()`` or
            build a new Streamer; changing the layer later does not change the Streamer.
        batch_size: B, the number of streams stepped together.
        check: check each x_t's shape and dtype (cheap); ``False`` skips even that.
        native: step through rnnkit's C++ step where it is available (float32/float64 on the CPU,
            the kernels built, no layer norm); ``False`` keeps the pure-torch step.
        threads: how many threads split each layer's products in the native step; None: torch's
            thread count, or 1 where the weights are too small to repay a fork and join
            (:data:`MIN_PARALLEL` elements).

    Eval semantics whatever ``layer.training`` is: no dropout between layers, no recurrent dropout,
    zoneout's expectation (h' = lerp(h_new, h, p)). Residual stacks are supported. ``path`` is
    "native" (one C++ call per step for all layers: zoneout, residuals and ``bias=False`` included),
    "fast" (the bound GEMV + elementwise list in torch) or, with ``layer_norm=True``, "cell": the
    same buffers and calls, but each layer runs an eval copy of its cell's own ``recurrence``, which
    allocates.

    Methods and attributes:
        step(x_t (B, D), out=None) -> y_t (B, H): the top layer's output, a new ordinary tensor at every
            call (usable outside inference mode, safe to keep in a list). ``out=`` (B, H), the layer's
            dtype, is filled in place and returned instead, so a step allocates nothing.
        reset(state=None): back to the layer's initial state (zeros or learned), or to ``state``
            (fields (L, B, H) or torch's (h, c) tuple).
        state: a copy of the carried state in the layer's state type, fields (L, B, H), equal to the
            state ``layer(x)`` returns after the same steps.
        refresh(): snapshot the layer's weights again, keeping the carried state.

    A Streamer is not an nn.Module and holds its own copy of the weights (one more copy in memory). Its
    buffers are shared by every call: use one Streamer per thread.

    Example:
        >>> lstm = rnnkit.LSTM(128, 512, num_layers=2).eval()
        >>> streamer = rnnkit.Streamer(lstm)
        >>> ys = [streamer.step(x_t) for x_t in frames]   # each x_t (1, 128), each y_t a new (1, 512)
        >>> streamer.state.h.shape                    # (2, 1, 512)
        >>> y = torch.empty(1, 512)
        >>> for x_t in frames:
        ...     streamer.step(x_t, out=y)             # no allocation: y is overwritten at every step
    """

    def __init__(
        self,
        layer: RNN | LSTM | GRU,
        batch_size: int = 1,
        *,
        check: bool = True,
        native: bool = True,
        threads: int | None = None,
    ) -> None:
        if not isinstance(layer, (RNN, LSTM, GRU)):
            raise ConfigError(
                f"Streamer takes an rnnkit.RNN, LSTM or GRU, got {type(layer).__name__}; "
                "to step a single cell, call the cell itself"
            )
        if layer.bidirectional:
            raise ConfigError(
                "Streamer needs a unidirectional layer: the backward half of a bidirectional layer reads "
                "each sequence from its end, which a stream has not seen yet (a stream cannot read the "
                "future); build the layer with bidirectional=False, or run whole sequences through layer(x)"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None, got {threads!r}")
        self.layer, self.batch_size, self.check = layer, batch_size, check
        self.native, self.threads = native, threads
        self._native: stream.CompiledStep | None = None
        self.refresh()

    def refresh(self) -> None:
        """Snapshot the layer's weights (and learned initial state) again; the carried state is kept."""
        carried = self.state if hasattr(self, "_ops") else None
        layer, first = self.layer, self.layer.cells[0]
        self.dtype, self.device = first.weight_ih.dtype, first.weight_ih.device
        self.path = "fast" if type(first) in _BUILDERS and not first.layer_norm else "cell"
        self._x_shape = torch.Size((self.batch_size, layer.input_size))
        rows, slots = _allocate(layer, self.batch_size)  # normal tensors: y and state work anywhere
        self._x = rows[:, : layer.input_size]
        with torch.inference_mode():
            initial = layer.initial_state(self.batch_size)
            self._initial = type(initial)(*(f.clone() for f in initial))  # fields (L, B, H)
            self._native = _compiled(layer, rows, slots, self.threads) if self.native else None
            if self._native is not None:
                self.path, self._ops = "native", []
            else:
                build = _BUILDERS[type(first)] if self.path == "fast" else _cell_ops
                self._ops = [
                    op for cell, views in zip(layer.cells, slots, strict=True) for op in build(cell, views)
                ]
        self._h = [views.h for views in slots]
        self._c = None if slots[0].c is None else [views.c for views in slots]
        self._y = slots[-1].out
        if carried is not None:
            carried = type(carried)(*(f.to(self.device, self.dtype) for f in carried))
        self.reset(carried)

    def reset(self, state: NamedTuple | tuple | Tensor | None = None) -> None:
        """Start again from the layer's initial state, or from ``state`` (fields (L, B, H))."""
        layer = self.layer
        if state is not None:
            shape = (layer.num_layers, self.batch_size, layer.hidden_size)
            state = check_state(state, layer.state_type, shape, self.dtype)
        state = self._initial if state is None else state
        buffers = [self._h] if self._c is None else [self._h, self._c]
        with torch.no_grad():
            for views, field in zip(buffers, state, strict=True):
                for view, value in zip(views, field.unbind(0), strict=True):
                    view.copy_(value)

    @property
    def state(self) -> NamedTuple:
        """A copy of the carried state: the layer's state type, fields (L, B, H)."""
        fields = [self._h] if self._c is None else [self._h, self._c]
        return self.layer.state_type(*(torch.stack(views) for views in fields))  # each (L, B, H)

    def step(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """One time step: x (B, D) -> y (B, H), a new tensor, or ``out`` (B, H) written in place."""
        fits = isinstance(x, Tensor) and x.shape == self._x_shape and x.dtype == self.dtype
        if self.check and not fits:
            self._refuse(x)
        if out is not None and self.check:
            self._check_out(out)
        if self._native is not None:
            return self._native_step(x, out, fits)
        with torch.inference_mode():
            self._x.copy_(x)
            for op in self._ops:
                op()
            if out is not None:
                return out.copy_(self._y)
        return self._y.clone()  # outside inference mode: an ordinary tensor, the caller's to keep

    def _native_step(self, x: Tensor, out: Tensor | None, fits: bool) -> Tensor:
        """The C++ step reads x and writes y by address: contiguous CPU arrays of the right shape and
        dtype go straight in, anything else through a torch copy (which raises for a bad shape)."""
        if not (fits and x.is_cpu and x.is_contiguous()):
            with torch.inference_mode():
                self._x.copy_(x)
            x = None  # already in the row buffer
        if out is None:
            y = torch.empty(self._y.shape, dtype=self.dtype)  # outside inference mode: the caller's to keep
            self._native(x, y)
            return y
        if out.is_cpu and out.dtype == self.dtype and out.shape == self._y.shape and out.is_contiguous():
            self._native(x, out)
            return out
        self._native(x, None)
        return out.copy_(self._y)

    def _check_out(self, out) -> None:
        shape = tuple(self._y.shape)
        if not isinstance(out, Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"out must be a tensor of shape (B, H) = {shape}, got {got}")
        if out.dtype != self.dtype or out.device != self.device:
            raise DTypeError(
                f"out must be {self.dtype} on {self.device} as the layer's weights, got {out.dtype} "
                f"on {out.device}: allocate it with "
                f"torch.empty({shape}, dtype={self.dtype}, device='{self.device}')"
            )

    def _refuse(self, x) -> None:
        x = check_input(x, self.layer.input_size, self.dtype, step=True)
        raise ShapeError(
            f"input must be (B, D) = {tuple(self._x_shape)}, the batch_size this Streamer was built with; "
            f"got {tuple(x.shape)}: build a Streamer with batch_size={x.shape[0]}"
        )

    def __repr__(self) -> str:
        return f"Streamer({self.layer!r}, batch_size={self.batch_size}, path={self.path!r})"


MIN_PARALLEL = 1 << 16  # weight elements below which one thread beats a fork and join per layer


def _compiled(layer, rows: Tensor, slots: list[_Slots], threads: int | None) -> stream.CompiledStep | None:
    """The C++ step over the Streamer's buffers, or None where it does not apply (layer norm, a
    subclass of the cells, another dtype or device, no build)."""
    first = layer.cells[0]
    if type(first) not in _BUILDERS or first.layer_norm:
        return None
    kind = f"rnn_{first.nonlinearity}" if type(first) is RNNCell else _KINDS[type(first)]
    base = rows.data_ptr()
    specs = [
        stream.LayerSpec(
            *_parameters(cell),
            *((view.data_ptr() - base) // rows.element_size() for view in (s.x, s.h, s.out)),
            c=s.c,
            zoneout=float(cell.zoneout),
        )
        for cell, s in zip(layer.cells, slots, strict=True)
    ]
    if threads is None:
        weights = sum(cell.weight_ih.numel() + cell.weight_hh.numel() for cell in layer.cells)
        threads = 1 if weights < MIN_PARALLEL else torch.get_num_threads()
    return stream.compiled_step(kind, specs, rows, threads)


def _allocate(layer, B: int) -> tuple[Tensor, list[_Slots]]:
    """One row buffer holds every vector the GEMVs read, each layer's input right before its h:

    [x | h_0 | h_1 | ...], or [x | h_0 | r_0 | h_1 | ...] where a residual r_l = h_l + x_l applies.
    So [x_l, h_l] is one slice, and h_l (or r_l) is layer l+1's input in place: no copy between layers.
    """
    H, weight = layer.hidden_size, layer.cells[0].weight_ih
    spans, x_start, end = [], 0, layer.input_size  # per layer: (x start, h start, out start)
    for cell in layer.cells:
        residual = layer.stack.residual and cell.input_size == H  # where Stacked adds one
        spans.append((x_start, end, end + H if residual else end))
        x_start, end = spans[-1][2], end + (2 * H if residual else H)
    rows = weight.new_zeros(B, end)  # (B, D + L*H [+ H per residual])
    c = weight.new_zeros(layer.num_layers, B, H) if layer.state_type._fields == ("h", "c") else None
    slots = [
        _Slots(
            rows[:, x0:h0],
            rows[:, h0 : h0 + H],
            rows[:, x0 : h0 + H],
            None if c is None else c[i],
            rows[:, out0 : out0 + H],
        )
        for i, (x0, h0, out0) in enumerate(spans)
    ]
    return rows, slots


def _gemv(bias: Tensor, weight: Tensor, x: Tensor, out: Tensor) -> Op:
    """out = bias + x @ weight.T: addmv on 1-D views at batch 1 (a GEMV), else addmm."""
    if x.shape[0] == 1:
        return partial(torch.addmv, bias, weight, x[0], out=out[0])
    return partial(torch.addmm, bias, x, weight.t(), out=out)


def _parameters(cell) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(W_ih, W_hh, b_ih, b_hh) detached, zero biases for bias=False; builders copy what they keep."""
    w_ih, w_hh = cell.weight_ih.detach(), cell.weight_hh.detach()
    if cell.bias_ih is None:
        zeros = w_ih.new_zeros(w_ih.shape[0])
        return w_ih, w_hh, zeros, zeros
    return w_ih, w_hh, cell.bias_ih.detach(), cell.bias_hh.detach()


def _new_state(s: _Slots, zoneout: float) -> Tensor:
    """Where the update writes h: h itself, or a scratch buffer that zoneout then blends in."""
    return torch.empty_like(s.h) if zoneout else s.h


def _zoneout(cell, s: _Slots, h_new: Tensor) -> list[Op]:
    """Zoneout's eval expectation h = lerp(h_new, h, p) (Krueger et al. 2016)."""
    return [partial(torch.lerp, h_new, s.h, cell.zoneout, out=s.h)] if cell.zoneout else []


def _residual(s: _Slots) -> list[Op]:
    """r = h + x where Stacked adds the layer's input to its output (Wu et al. 2016)."""
    return [] if s.out.data_ptr() == s.h.data_ptr() else [partial(torch.add, s.h, s.x, out=s.out)]


def _rnn_ops(cell: RNNCell, s: _Slots) -> list[Op]:
    """h' = act(W [x, h] + b_ih + b_hh) (Elman 1990)."""
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    gates, h_new = torch.empty_like(s.h), _new_state(s, cell.zoneout)  # (B, H) each
    act = partial(torch.tanh, gates) if cell.nonlinearity == "tanh" else partial(torch.clamp_min, gates, 0)
    ops = [_gemv(b_ih + b_hh, torch.cat([w_ih, w_hh], 1), s.xh, gates), partial(act, out=h_new)]
    return ops + _zoneout(cell, s, h_new) + _residual(s)


def _lstm_ops(cell: LSTMCell, s: _Slots) -> list[Op]:
    """c' = sig(f) c + sig(i) tanh(g); h' = sig(o) tanh(c'), rows reordered (i, f, o, g) at snapshot."""
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    wi, wf, wg, wo = torch.cat([w_ih, w_hh], 1).chunk(4, 0)  # each (H, D + H)
    bi, bf, bg, bo = (b_ih + b_hh).chunk(4)
    weight, bias = torch.cat([wi, wf, wo, wg]), torch.cat([bi, bf, bo, bg])  # one sigmoid covers 3H
    H = cell.hidden_size
    gates = s.h.new_empty(s.h.shape[0], 4 * H)  # (B, 4H): i, f, o, g
    i, f, o, g = gates.split(H, 1)
    c_new, tanh_c = (torch.empty_like(s.h) if cell.zoneout else s.c), torch.empty_like(s.h)
    h_new = _new_state(s, cell.zoneout)
    ops = [
        _gemv(bias, weight, s.xh, gates),
        gates[:, : 3 * H].sigmoid_,
        g.tanh_,
        partial(torch.mul, s.c, f, out=c_new),
        partial(c_new.addcmul_, i, g),
        partial(torch.tanh, c_new, out=tanh_c),
        partial(torch.mul, o, tanh_c, out=h_new),
    ]
    if cell.zoneout:  # the cell state takes zoneout's expectation too, before h does below
        ops.append(partial(torch.lerp, c_new, s.c, cell.zoneout, out=s.c))
    return ops + _zoneout(cell, s, h_new) + _residual(s)


def _gru_ops(cell: GRUCell, s: _Slots) -> list[Op]:
    """r, z = sig(W_rz [x, h] + b); n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = lerp(n, h, z)."""
    w_ih, w_hh, b_ih, b_hh = _parameters(cell)
    H = cell.hidden_size
    w_rz = torch.cat([w_ih[: 2 * H], w_hh[: 2 * H]], 1)  # (2H, D + H)
    gates = s.h.new_empty(s.h.shape[0], 4 * H)  # (B, 4H): r, z, W_in x + b_in, W_hn h + b_hn
    r, z, n, hn = gates.split(H, 1)
    rz = gates[:, : 2 * H]
    h_new = _new_state(s, cell.zoneout)
    ops = [
        _gemv(b_ih[: 2 * H] + b_hh[: 2 * H], w_rz, s.xh, rz),
        _gemv(b_ih[2 * H :].clone(), w_ih[2 * H :].clone(), s.x, n),
        _gemv(b_hh[2 * H :].clone(), w_hh[2 * H :].clone(), s.h, hn),
        rz.sigmoid_,
        partial(n.addcmul_, r, hn),
        n.tanh_,
        partial(torch.lerp, n, s.h, z, out=h_new),
    ]
    return ops + _zoneout(cell, s, h_new) + _residual(s)


def _cell_ops(cell, s: _Slots) -> list[Op]:
    """The slower path (layer norm): an eval copy of the cell runs its own maths, which allocates."""
    frozen = copy.deepcopy(cell).eval().requires_grad_(False)
    fields = (s.h,) if s.c is None else (s.h, s.c)

    def run() -> None:
        _, new = frozen.recurrence(frozen.input_projection(s.x), frozen.state_type(*fields))
        for buffer, value in zip(fields, new, strict=True):
            buffer.copy_(value)

    return [run, *_residual(s)]


_BUILDERS = {RNNCell: _rnn_ops, LSTMCell: _lstm_ops, GRUCell: _gru_ops}
_KINDS = {LSTMCell: "lstm", GRUCell: "gru"}  # the C++ step's kind; RNNCell: "rnn_" + its nonlinearity
