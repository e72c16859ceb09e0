"""Builds rnnkit's C++ loops (the ``.cpp`` files beside this one) on first use and caches them.

The first call compiles the source with the machine's C++ compiler through
``torch.utils.cpp_extension.load`` (ninja) into a per-torch-version cache folder, about 5 s once;
later processes load the cached library in well under a second. When there is no compiler, ninja or
source, or the build fails, one warning names why and callers fall back to their pure-torch loops.
``RNNKIT_NO_EXTENSION=1`` skips the extension altogether (checked at every call).

The cache is ``rnnkit.files.cache_dir("extensions", ...)``: under ``$RNNKIT_CACHE``, else
``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit import files
from rnnkit.errors import warn_user
from rnnkit.files import cache_dir, locked

DISABLE = "RNNKIT_NO_EXTENSION"
SOURCES = Path(__file__).resolve().parent
FLOCK = files.fcntl is not None  # Windows has no flock: torch's lock alone, never removed
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtensionInfo:
    """What happened to one extension in this process.

    Attributes:
        name: the library's name, with the instruction set it was built for.
        available: True when the compiled ops are loaded.
        reason: why it is not available, else None.
        seconds: wall time of the build (``compiled``) or of loading the cached library.
        compiled: True when this process compiled it, False when it came from the cache.
        path: the folder holding the built library.
        library: the built library's file, for ``ctypes.CDLL``.
    """

    name: str
    available: bool
    reason: str | None = None
    seconds: float = 0.0
    compiled: bool = False
    path: str | None = None
    library: str | None = None


_loaded: dict[str, ExtensionInfo] = {}
_lock = threading.Lock()


def disabled() -> bool:
    """True when ``RNNKIT_NO_EXTENSION`` is set to anything but "" or "0"."""
    return os.environ.get(DISABLE, "") not in ("", "0")


def load(source: str) -> ExtensionInfo:
    """Builds (once, cached on disk) and loads ``kernels/<source>.cpp``; never raises.

    The library exports plain C functions, for ``ctypes.CDLL(info.library)``. Build errors become a
    warning and an ``ExtensionInfo`` with ``available=False`` and the reason.
    """
    if source in _loaded:
        return _loaded[source]
    with _lock:
        if source not in _loaded:
            _loaded[source] = _build(source)
    return _loaded[source]


def _variants() -> list[tuple[str, list[str]]]:
    """(suffix, compiler flags) to try in turn: the vector instructions torch's own kernels use on this
    CPU first, then narrower ones (an older compiler may lack the widest), then portable code."""
    if sys.platform == "win32":
        return [("generic", ["/O2", "/openmp"])]
    generic = ["-O3", "-fno-trapping-math", "-fopenmp-simd" if sys.platform == "darwin" else "-fopenmp"]
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() not in ("x86_64", "amd64") or capability not in ("AVX2", "AVX512"):
        return [("generic", generic)]
    avx2 = [*generic, "-mavx2", "-mfma", "-ffp-contract=fast"]
    avx512 = [*avx2, *(f"-mavx512{s}" for s in ("f", "dq", "vl", "bw")), "-mprefer-vector-width=512"]
    variants = [("avx2", avx2), ("generic", generic)]
    return [("avx512", avx512), *variants] if capability == "AVX512" else variants


def library_dir() -> Path:
    """Where built libraries are kept, one folder per torch and Python version."""
    tag = f"torch-{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    return cache_dir("extensions", tag)


def _why_not(source_file: Path) -> str | None:
    """A reason the build cannot start, or None."""
    from torch.utils import cpp_extension

    if not source_file.is_file():
        return f"its source {source_file} is missing from the installed package"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} is not on PATH (install g++ or clang++, or set CXX)"
    if not cpp_extension.is_ninja_available() and shutil.which("ninja", path=_SCRIPTS) is None:
        return "ninja is not installed (pip install ninja)"
    return None


_SCRIPTS = str(Path(sys.executable).parent)  # where `pip install ninja` puts ninja in a virtualenv


def _build(source: str) -> ExtensionInfo:
    source_file = SOURCES / f"{source}.cpp"
    variants = _variants()
    reason = _why_not(source_file)
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = path + os.pathsep + _SCRIPTS  # torch runs ninja from PATH
    try:
        for suffix, flags in variants if reason is None else []:
            try:
                return _compile(f"rnnkit_{source}_{suffix}", source_file, flags)
            except Exception as error:  # a failed build must never break the layer: try the next, fall back
                logger.info("building the %s variant of %s failed: %s", suffix, source, _first_error(error))
                reason = reason or f"the build failed: {_first_error(error)}"
    finally:
        os.environ["PATH"] = path
    name = f"rnnkit_{source}_{variants[0][0]}"
    warn_user(
        f"rnnkit could not build its C++ loop {name!r} ({reason}); layers fall back to the slower "
        f"pure-torch loop. Set {DISABLE}=1 to skip the build and this warning."
    )
    return ExtensionInfo(name, available=False, reason=reason)


def _first_error(error: Exception) -> str:
    """The compiler's first error line when there is one, else the exception's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return next((line for line in lines if "error:" in line), lines[-1])


def _compile(name: str, source_file: Path, flags: list[str]) -> ExtensionInfo:
    """Builds one variant in its own folder, one process at a time (``files.locked``, which the system
    drops when its holder dies). torch's own lock is a plain file that a build killed midway leaves
    behind, after which every later process would wait for it forever; under our lock no build runs,
    so such a file is stale and goes.
    """
    from torch.utils import cpp_extension

    folder = library_dir() / name  # one folder per library: torch writes its build.ninja there
    folder.mkdir(parents=True, exist_ok=True)
    built = folder / f"{name}.so"
    before = built.stat().st_mtime_ns if built.exists() else None
    start = time.perf_counter()
    with locked(folder):
        if FLOCK:
            (folder / "lock").unlink(missing_ok=True)  # torch's, left by a killed build
        library = cpp_extension.load(
            name=name,
            sources=[str(source_file)],
            extra_cflags=flags,
            extra_include_paths=[str(source_file.parent)],  # the shared driver.h and loop_common.h
            build_directory=str(folder),
            is_python_module=False,
            verbose=False,
        )
    seconds = time.perf_counter() - start
    compiled = not built.exists() or built.stat().st_mtime_ns != before
    logger.info("%s %s in %.1f s (%s)", "built" if compiled else "loaded", name, seconds, folder)
    return ExtensionInfo(name, True, None, seconds, compiled, str(folder), str(library))
