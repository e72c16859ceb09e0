"""Files shared by processes: the one cache directory and the one lock.

    with locked(cache_dir("corpora") / digest):   # one process at a time; the others wait
        ...

The cache lives in ``$RNNKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/rnnkit``, else
``~/.cache/rnnkit``. The lock is POSIX's ``flock``, which the system drops when its holder dies, so
a killed process never leaves a lock behind; on Windows (no ``flock``) it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CACHE_VARIABLE = "RNNKIT_CACHE"


def downloaded(name: str, what: str, how: str) -> Path:
    """``<cache>/downloads/<name>``, a file a set-up step downloads from the package registry; when it
    is missing, a DataError saying that ``what`` reads it and ``how`` to get it."""
    from rnnkit.errors import DataError

    path = cache_dir("downloads") / name
    if not path.is_file():
        raise DataError(f"{what} reads {name}, which is not in {path.parent}: {how} -d {path.parent}")
    return path


def cache_dir(*parts: str) -> Path:
    """``<cache root>/<parts...>``; created on first use by whoever writes into it."""
    root = os.environ.get(CACHE_VARIABLE)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnkit"
    return Path(root).joinpath(*parts)


@contextlib.contextmanager
def locked(directory: str | Path, blocking: bool = True) -> Iterator[bool]:
    """Hold ``<directory>/.lock`` exclusively while the block runs (``directory`` is created).

    With ``blocking=False`` the block runs at once and receives False when another process holds
    the lock (the caller decides what to do), True when this one took it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield True
        return
    with (directory / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_directory(new: str | Path, path: str | Path) -> None:
    """Rename the directory ``new`` to ``path`` (on the same file system) so that ``path`` is never
    half written: an existing ``path`` is moved aside first, put back if the rename fails, and
    deleted last."""
    new, path = Path(new), Path(path)
    old = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
    had_old = path.exists()
    if had_old:
        os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        if had_old:
            os.rename(old, path)
        raise
    fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync(path: str | Path) -> None:
    """Flush a file, or a directory's entries, to the disk."""
    if os.name == "nt" and Path(path).is_dir():  # Windows cannot open a directory to flush it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
