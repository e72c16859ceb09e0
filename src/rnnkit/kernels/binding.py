"""The one binding of the C++ time loops: the table of cell kinds, the C struct, and its layout check.

Every library ``kernels/<source>.cpp`` is the driver of ``driver.h`` instantiated for one cell (or
two: tanh and relu share ``rnn_loop``). It exports ``rnnkit_<kind>_{forward,backward}_{f32,f64}``,
each taking one struct of sizes and pointers (:class:`Args`, a ``ctypes.Structure`` mirroring the C
``Args``), ``rnnkit_loop_error`` for the message of a failed call, and ``rnnkit_loop_layout``: the C
struct's size and every field's offset and size. When a library loads, that layout is compared with
:class:`Args`; a field added, moved or resized on one side only fails loudly there (a warning, and
the pure-torch loop), never as a misread pointer. The C++ code trusts every shape and dtype it is
given, so :func:`check` refuses any array it would misread, at the boundary.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, replace
from math import prod

import torch
from torch import Tensor

from rnnkit.errors import DTypeError, RnnkitError, ShapeError, warn_user
from rnnkit.kernels import build

SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_pointer, _int = ctypes.c_void_p, ctypes.c_int64
INPUTS = ("gx", "w", "bias_ih", "bias_hh", "gam_ih", "gam_h", "gam_c", "bet_c")  # what the loop reads
SAVED = ("gates", "aux", "hs", "cs", "hin", "xhat", "rstd_ih", "rhat", "rstd_h", "chat", "rstd_c")


class Args(ctypes.Structure):
    """The C struct ``Args`` of kernels/driver.h, field for field."""

    _fields_ = [
        *((name, _int) for name in ("B", "T", "H", "blocks")),
        *((name, _pointer) for name in (*INPUTS, "dmask", "zmask", "lens")),
        *((name, ctypes.c_double) for name in ("eps_ih", "eps_h", "eps_c", "zoneout")),
        *((name, _pointer) for name in ("y", "h", "c", *SAVED, "dy", "dgx", "dr", "acc")),
    ]


@dataclass(frozen=True)
class LoopSpec:
    """One cell kind of the compiled loops: its library, its step's layout, its state.

    Attributes:
        source: the library (``kernels/<source>.cpp``) that holds the kind's loop.
        gates: G / H, the rows of W_ih and W_hh per hidden unit.
        state: the state's fields, in order (the loop takes and returns them as (B, H) each).
        split: the gates read u = W_ih x and v = W_hh h apart (GRU's reset gate), with a bias each;
            else their sum, with every bias summed into one.
        cell_norm: the layer norm of c (the LSTM's LN_c) is part of the step.
        aux: the step saves one more (T, B, H) row for backward (LSTM: tanh(LN_c(c_n)), GRU: v_n).
    """

    source: str
    gates: int
    state: tuple[str, ...] = ("h",)
    split: bool = False
    cell_norm: bool = False
    aux: bool = False

    def acc_width(self, H: int) -> int:
        """Columns of one block's parameter sums: dbias_ih, [dbias_hh], dgamma_ih, dgamma_hh, [dgamma_c,
        dbeta_c] (the bracketed ones where ``split``, ``cell_norm``)."""
        return (4 if self.split else 3) * self.gates * H + (2 * H if self.cell_norm else 0)


KINDS = {
    "lstm": LoopSpec("lstm_loop", 4, state=("h", "c"), cell_norm=True, aux=True),
    "gru": LoopSpec("gru_loop", 3, split=True, aux=True),
    "rnn_tanh": LoopSpec("rnn_loop", 1),
    "rnn_relu": LoopSpec("rnn_loop", 1),
}


class LayoutError(RnnkitError, RuntimeError):
    """The C struct of a built library differs from :class:`Args`: the two sides would misread it."""


Layout = tuple[int, list[tuple[str, int, int]]]  # (struct size, [(field, offset, size)])


def describe(structure: type[ctypes.Structure]) -> Layout:
    """The layout of a ctypes struct, as ``rnnkit_loop_layout`` gives the C one."""
    places = [(name, getattr(structure, name)) for name, _ in structure._fields_]
    return ctypes.sizeof(structure), [(name, place.offset, place.size) for name, place in places]


def expected_layout() -> Layout:
    """What every library's struct must be: :class:`Args`'s layout."""
    return describe(Args)


def parse_layout(text: str) -> Layout:
    """``"size name@offset+size ..."`` -> (size, [(name, offset, size)])."""
    size, *fields = text.split()
    parsed = []
    for field in fields:
        name, place = field.split("@")
        offset, width = place.split("+")
        parsed.append((name, int(offset), int(width)))
    return int(size), parsed


def check_layout(library: str, c_layout: str, expected: Layout | None = None) -> None:
    """Raises :class:`LayoutError` naming the first field where the C layout and ours differ.

    ``c_layout`` is ``rnnkit_loop_layout()``'s text; ``expected`` defaults to :func:`expected_layout`.
    """
    (c_size, c_fields), (py_size, py_fields) = parse_layout(c_layout), expected or expected_layout()
    if (c_size, c_fields) == (py_size, py_fields):
        return
    where = f"sizes {c_size} bytes in C, {py_size} in Python"
    for i in range(max(len(c_fields), len(py_fields))):
        c = c_fields[i] if i < len(c_fields) else None
        py = py_fields[i] if i < len(py_fields) else None
        if c != py:
            where = f"field {i}: {_field(c)} in C, {_field(py)} in Python"
            break
    raise LayoutError(
        f"the C struct Args of {library} differs from rnnkit.kernels.binding.Args ({where}). The C++ "
        "source and its ctypes mirror must list the same fields in the same order: update both, then "
        "delete the cached build if it is older than the source."
    )


def _field(field: tuple[str, int, int] | None) -> str:
    return "nothing" if field is None else f"{field[0]!r} at offset {field[1]} ({field[2]} bytes)"


class Library:
    """One built library of kernels/, opened once: its exported calls, with the layout checked."""

    def __init__(self, source: str) -> None:
        self.source = source
        info = build.load(source)
        self.handle: ctypes.CDLL | None = None
        if info.available:
            try:
                self.handle = self._open(info)
            except LayoutError as error:  # like a failed build: one warning, then the pure-torch loop
                warn_user(
                    f"rnnkit cannot use its C++ loop {info.name!r}: {error} Layers fall back to the "
                    f"slower pure-torch loop. Set {build.DISABLE}=1 to skip it and this warning."
                )
                info = replace(info, available=False, reason=str(error))
        self.info = info

    def _open(self, info: build.ExtensionInfo) -> ctypes.CDLL:
        handle = ctypes.CDLL(info.library)
        handle.rnnkit_loop_layout.restype = ctypes.c_char_p
        handle.rnnkit_loop_error.restype = ctypes.c_char_p
        check_layout(info.name, handle.rnnkit_loop_layout().decode())
        for kind, spec in KINDS.items():
            if spec.source != self.source:
                continue
            for direction in ("forward", "backward"):
                for suffix in SUFFIX.values():
                    function = getattr(handle, f"rnnkit_{kind}_{direction}_{suffix}")
                    function.argtypes, function.restype = [ctypes.POINTER(Args)], ctypes.c_int
        return handle

    def call(self, kind: str, direction: str, args: Args, dtype: torch.dtype) -> None:
        """Runs ``direction`` ("forward" or "backward"); a failure in C++ becomes a RuntimeError."""
        if getattr(self.handle, f"rnnkit_{kind}_{direction}_{SUFFIX[dtype]}")(ctypes.byref(args)):
            message = self.handle.rnnkit_loop_error().decode()
            raise RuntimeError(f"rnnkit's C++ {kind} loop failed: {message}")


_opened: dict[str, Library] = {}
_lock = threading.Lock()


def library(kind: str) -> Library:
    """The library of ``kind``, built and opened on first use (never raises: see ``.info``)."""
    source = KINDS[kind].source
    if source not in _opened:
        with _lock:
            if source not in _opened:
                _opened[source] = Library(source)
    return _opened[source]


def pointers(arrays: dict[str, Tensor | None]) -> dict[str, int | None]:
    """Every array's address, named as in C (None: null). The struct holds bare addresses: the
    caller keeps every tensor alive until the call returns."""
    for t in arrays.values():
        assert t is None or t.is_contiguous(), "the C++ loop reads contiguous arrays"
    assert _NAMES.issuperset(arrays), "ctypes would keep an unknown name as a plain attribute"
    return {name: None if t is None else t.data_ptr() for name, t in arrays.items()}


_NAMES = frozenset(name for name, _ in Args._fields_)


def blocks(batch: int) -> int:
    """How many blocks of rows the loop splits the batch into: one per thread, at least 4 rows each."""
    return max(1, min(torch.get_num_threads(), batch // 4))


def check(
    op: str, arrays: dict[str, Tensor | None], shapes: dict[str, tuple[int, ...]], context: str
) -> None:
    """Every array the C++ loop reads must have the shape and dtype it assumes: it cannot tell.

    ``arrays`` starts with x, whose dtype every other array shares (``lengths``: int64); ``context``
    says what the shapes follow from, for the message.
    """
    dtype = next(iter(arrays.values())).dtype
    for name, t in arrays.items():
        if t is None:
            continue
        if tuple(t.shape) != shapes[name]:
            raise ShapeError(f"{op}: {name} must be {shapes[name]} for {context}, got {tuple(t.shape)}")
        want = torch.int64 if name == "lengths" else dtype
        if t.dtype != want or t.device.type != "cpu":
            raise DTypeError(f"{op}: {name} must be a {want} CPU tensor, got {t.dtype} on {t.device}")


def contiguous(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    return tuple(None if t is None else t.contiguous() for t in tensors)


def carve(arena: Tensor, shapes: dict[str, tuple[int, ...] | None]) -> dict[str, Tensor | None]:
    """Consecutive views of ``arena`` with the given shapes (None stays None)."""
    views, start = {}, 0
    for name, shape in shapes.items():
        if shape is None:
            views[name] = None
            continue
        numel = prod(shape)
        views[name] = arena[start : start + numel].view(shape)
        start += numel
    return views


def numel(shapes: dict[str, tuple[int, ...] | None]) -> int:
    """Elements of every array :func:`carve` would cut."""
    return sum(prod(s) for s in shapes.values() if s)
