"""The Streamer's compiled step: one time step of every layer of a stack in one C++ call.

``stream_step.cpp`` runs, per layer, the matrix-vector products over weights packed once (:func:`pack`:
hidden units in blocks of J, each block k-major and gate-minor, (nb, K, G, J)), the gates fused right
after each block, and the state update, in the buffers the Streamer allocated; no Python runs between
the products and the gates, and nothing is allocated. :func:`compiled_step` returns a
:class:`CompiledStep` bound to those buffers, or None where the library is not there (no compiler,
``RNNKIT_NO_EXTENSION=1``, a layout mismatch: one warning) or the dtype/device is not float32/float64
on the CPU; the Streamer then keeps its pure-torch step, which the tests compare this one against.

The C structs (``Layer``, ``Args``) have ctypes mirrors here; their layout is compared with the
library's own (``rnnkit_stream_layout``) when it loads, as :mod:`.binding` does for the time loops.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.errors import ConfigError, warn_user
from rnnkit.kernels import binding, build

SOURCE = "stream_step"
CODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_int, _pointer = ctypes.c_int64, ctypes.c_void_p


class Layer(ctypes.Structure):
    """The C struct ``Layer`` of stream_step.cpp, field for field."""

    _fields_ = [
        *((name, _int) for name in ("D", "x0", "h0", "out0")),
        *((name, _pointer) for name in ("w", "bias_ih", "bias_hh", "c")),
        ("zoneout", ctypes.c_double),
        ("residual", _int),
    ]


class Args(ctypes.Structure):
    """The C struct ``Args`` of stream_step.cpp, field for field."""

    _fields_ = [
        *((name, _int) for name in ("kind", "B", "H", "L", "J", "width", "threads")),
        *((name, _pointer) for name in ("rows", "scratch", "layers")),
    ]


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the stack, as the Streamer lays it out.

    Attributes:
        weight_ih: (G*H, D_l); weight_hh: (G*H, H); bias_ih, bias_hh: (G*H,) or None (zeros).
        x0, h0, out0: the columns of x_l, h_l and out_l in each row of the row buffer; h0 == x0 + D_l.
        c: the LSTM's (B, H) cell state, contiguous (None for the others).
        zoneout: p, whose expectation h' = h_n + p (h - h_n) the step takes (0: none).
    """

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    x0: int
    h0: int
    out0: int
    c: Tensor | None = None
    zoneout: float = 0.0


def pack(weight_ih: Tensor, weight_hh: Tensor, gates: int, units: int) -> Tensor:
    """[W_ih | W_hh] (G*H, K) -> (nb, K, G, J): blocks of J hidden units, each k-major, gate-minor.

    Block b, column k holds the G gates' rows of units b*J .. b*J + J - 1; units past H are zero rows.
    """
    w = torch.cat([weight_ih, weight_hh], 1)  # (G*H, K), K = D + H
    GH, K = w.shape
    H = GH // gates
    nb = -(-H // units)
    w = F.pad(w.view(gates, H, K), (0, 0, 0, nb * units - H))  # (G, nb*J, K)
    return w.view(gates, nb, units, K).permute(1, 3, 0, 2).contiguous()  # (nb, K, G, J)


def pack_bias(bias: Tensor, gates: int, units: int) -> Tensor:
    """(G*H,) -> (nb, G, J), as :func:`pack` lays out the rows."""
    H = bias.shape[0] // gates
    nb = -(-H // units)
    b = F.pad(bias.view(gates, H), (0, nb * units - H))  # (G, nb*J)
    return b.view(gates, nb, units).transpose(0, 1).contiguous()  # (nb, G, J)


class CompiledStep:
    """One step of a whole stack through the C++ library, bound to the Streamer's buffers.

    Call it with x (B, D) contiguous (or None: x already sits in the row buffer) and y (B, H)
    contiguous (or None: the top layer's output stays in the row buffer); both of the stack's dtype on
    the CPU. Nothing is checked per call: the Streamer does.
    """

    def __init__(self, function, kind: str, layers: list[LayerSpec], rows: Tensor, threads: int) -> None:
        B, width = rows.shape
        H = layers[0].weight_hh.shape[1]
        G = GATES[kind]
        self.units = _handle().rnnkit_stream_block(CODES[kind], rows.dtype == torch.float64)
        self.threads = threads
        self._keep = [rows]  # every array the C side holds an address of
        self._scratch = rows.new_empty(B, H)
        structs = (Layer * len(layers))()
        for struct, spec in zip(structs, layers, strict=True):
            gru = kind == "gru"
            zeros = spec.weight_hh.new_zeros(G * H)
            b_ih = zeros if spec.bias_ih is None else spec.bias_ih.detach()
            b_hh = zeros if spec.bias_hh is None else spec.bias_hh.detach()
            w = pack(spec.weight_ih.detach(), spec.weight_hh.detach(), G, self.units)
            bias_ih = pack_bias(b_ih if gru else b_ih + b_hh, G, self.units)
            bias_hh = pack_bias(b_hh, G, self.units) if gru else None
            self._keep += [w, bias_ih, bias_hh, spec.c]
            struct.D, struct.x0, struct.h0, struct.out0 = spec.weight_ih.shape[1], spec.x0, spec.h0, spec.out0
            struct.w, struct.bias_ih = w.data_ptr(), bias_ih.data_ptr()
            struct.bias_hh = None if bias_hh is None else bias_hh.data_ptr()
            struct.c = None if spec.c is None else spec.c.data_ptr()
            struct.zoneout, struct.residual = float(spec.zoneout), int(spec.out0 != spec.h0)
        self._layers = structs
        self._args = Args(
            CODES[kind], B, H, len(layers), self.units, width, threads, rows.data_ptr(),
            self._scratch.data_ptr(), ctypes.addressof(structs),
        )  # fmt: skip
        self._address = ctypes.addressof(self._args)
        self._function = function

    def set_threads(self, threads: int) -> None:
        """How many threads split each layer's blocks (at most torch's pool size is used)."""
        self.threads = self._args.threads = max(1, int(threads))

    def __call__(self, x: Tensor | None, y: Tensor | None) -> None:
        if self._function(
            self._address, None if x is None else x.data_ptr(), None if y is None else y.data_ptr()
        ):
            message = _handle().rnnkit_stream_error().decode()
            raise RuntimeError(f"rnnkit's C++ streaming step failed: {message}")


def compiled_step(
    kind: str, layers: list[LayerSpec], rows: Tensor, threads: int | None = None
) -> CompiledStep | None:
    """A :class:`CompiledStep` over ``rows`` (B, width) for a stack of ``kind`` ("rnn_tanh", "rnn_relu",
    "lstm", "gru"), or None where the library or this dtype/device cannot run it. ``threads``:
    torch's thread count when None.
    """
    if kind not in CODES:
        raise ConfigError(f"compiled_step: kind must be one of {sorted(CODES)}, got {kind!r}")
    if rows.device.type != "cpu" or rows.dtype not in binding.SUFFIX or build.disabled():
        return None
    if not info().available:
        return None
    function = getattr(_handle(), f"rnnkit_stream_step_{binding.SUFFIX[rows.dtype]}")
    threads = torch.get_num_threads() if threads is None else threads
    return CompiledStep(function, kind, layers, rows, max(1, threads))


def info() -> build.ExtensionInfo:
    """Builds (or loads) the library once per process and says how it went."""
    return _library().info


class _Library:
    def __init__(self) -> None:
        self.info = build.load(SOURCE)
        self.handle: ctypes.CDLL | None = None
        if self.info.available:
            try:
                self.handle = _open(self.info)
            except binding.LayoutError as error:
                warn_user(
                    f"rnnkit cannot use its C++ streaming step {self.info.name!r}: {error} Streamers fall "
                    f"back to their pure-torch step. Set {build.DISABLE}=1 to skip it and this warning."
                )
                self.info = build.ExtensionInfo(self.info.name, available=False, reason=str(error))


def expected_layout() -> str:
    """What ``rnnkit_stream_layout()`` must return: the ctypes mirrors' layouts, Layer then Args."""
    return " | ".join(_text(binding.describe(s)) for s in (Layer, Args))


def _text(layout: binding.Layout) -> str:
    size, fields = layout
    return " ".join([str(size), *(f"{name}@{offset}+{width}" for name, offset, width in fields)])


def check_layout(library: str, c_layout: str, expected: str | None = None) -> None:
    """Raises :class:`binding.LayoutError` naming the first field where the C structs and ours differ.

    Both layouts are ``"size name@offset+size ..."`` per struct, Layer then Args, joined by " | ".
    """
    expected = expected_layout() if expected is None else expected
    if c_layout == expected:
        return
    where = "a struct on one side only"
    parts = zip(("Layer", "Args"), c_layout.split(" | "), expected.split(" | "), strict=False)
    for struct, c_part, py_part in parts:
        c_fields, py_fields = c_part.split(), py_part.split()
        if c_fields != py_fields:
            pairs = enumerate(zip(c_fields, py_fields, strict=False))
            i = next((i for i, (a, b) in pairs if a != b), min(len(c_fields), len(py_fields)))
            c_field, py_field = (f[i] if i < len(f) else "nothing" for f in (c_fields, py_fields))
            place = "size" if i == 0 else f"field {i - 1}"
            where = f"struct {struct}, {place}: {c_field} in C, {py_field} in Python"
            break
    raise binding.LayoutError(
        f"the C structs of {library} differ from rnnkit.kernels.stream's ctypes mirrors ({where}). Update "
        "both sides, then delete the cached build if it is older than the source."
    )


def _open(extension: build.ExtensionInfo) -> ctypes.CDLL:
    handle = ctypes.CDLL(extension.library)
    handle.rnnkit_stream_layout.restype = ctypes.c_char_p
    handle.rnnkit_stream_error.restype = ctypes.c_char_p
    check_layout(extension.name, handle.rnnkit_stream_layout().decode())
    handle.rnnkit_stream_block.argtypes, handle.rnnkit_stream_block.restype = [_int, _int], _int
    for suffix in binding.SUFFIX.values():
        function = getattr(handle, f"rnnkit_stream_step_{suffix}")
        function.argtypes, function.restype = [_pointer, _pointer, _pointer], ctypes.c_int
    return handle


_opened: list[_Library] = []
_lock = threading.Lock()


def _library() -> _Library:
    if not _opened:
        with _lock:
            if not _opened:
                _opened.append(_Library())
    return _opened[0]


def _handle() -> ctypes.CDLL:
    return _library().handle
