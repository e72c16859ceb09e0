"""What the compiled loops (``lstm_loop``, ``gru_loop``) share: the library, its calls and array checks.

A loop ``csrc/<kind>_loop.cpp`` exports ``rnnkit_<kind>_{forward,backward}_{f32,f64}``, each taking one
struct of sizes and pointers (a ``ctypes.Structure`` mirroring the C ``Args``), and
``rnnkit_<kind>_error`` for the message of a failed call. The C++ code trusts every shape and dtype
it is given, so :func:`check` refuses any array it would misread, at the boundary.
"""

from __future__ import annotations

import ctypes
import functools
from math import prod

import torch
from torch import Tensor

from rnnkit.errors import DTypeError, ShapeError
from rnnkit.functional import extension

SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class CompiledLoop:
    """One loop of ``csrc``: ``kind`` ("lstm", "gru") names its source and its exported functions."""

    def __init__(self, kind: str, args_type: type[ctypes.Structure]) -> None:
        self.kind, self.source, self.args_type = kind, f"{kind}_loop", args_type

    def info(self) -> extension.ExtensionInfo:
        """Builds the extension if this process has not yet, and says how it went (build time, cache)."""
        return extension.load(self.source)

    def available(self, x: Tensor) -> bool:
        """True when the loop would run compiled for this input: float32/float64 on the CPU, in eager
        mode (not under torch.compile, tracing, torch.func transforms or autocast), extension built.
        """
        if x.device.type != "cpu" or x.dtype not in SUFFIX or extension.disabled():
            return False
        if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.is_autocast_enabled("cpu"):
            return False
        if torch._C._are_functorch_transforms_active():  # vmap/grad would need a functorch rule
            return False
        return self.info().available

    @functools.cached_property
    def library(self) -> ctypes.CDLL:
        library = ctypes.CDLL(self.info().library)
        for name in ("forward", "backward"):
            for suffix in SUFFIX.values():
                function = getattr(library, f"rnnkit_{self.kind}_{name}_{suffix}")
                function.argtypes, function.restype = [ctypes.POINTER(self.args_type)], ctypes.c_int
        getattr(library, f"rnnkit_{self.kind}_error").restype = ctypes.c_char_p
        return library

    def call(self, direction: str, args: ctypes.Structure, dtype: torch.dtype) -> None:
        """Runs ``direction`` ("forward" or "backward"); a failure in C++ becomes a RuntimeError."""
        library = self.library
        if getattr(library, f"rnnkit_{self.kind}_{direction}_{SUFFIX[dtype]}")(ctypes.byref(args)):
            message = getattr(library, f"rnnkit_{self.kind}_error")().decode()
            raise RuntimeError(f"rnnkit's C++ {self.kind.upper()} loop failed: {message}")

    def pointers(self, arrays: dict[str, Tensor | None]) -> dict[str, int | None]:
        """Every array's address, named as in C (None: null). The struct holds bare addresses: the
        caller keeps every tensor alive until the call returns."""
        for t in arrays.values():
            assert t is None or t.is_contiguous(), "the C++ loop reads contiguous arrays"
        assert self.args_type.names.issuperset(arrays), (
            "ctypes would keep an unknown name as a plain attribute"
        )
        return {name: None if t is None else t.data_ptr() for name, t in arrays.items()}

    def refuse_double_backward(self) -> None:
        """Raises where autograd asks this backward for a graph (create_graph=True): a second
        derivative would silently miss the op."""
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"rnnkit's compiled {self.kind.upper()} loop has first derivatives only, and this backward "
                "was asked to build a graph for a second one (create_graph=True). Set RNNKIT_NO_EXTENSION=1 "
                "to run the pure-torch loop, which supports higher derivatives."
            )


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
