"""Checkpoints written atomically, the previous one kept as a fallback, and the RNG states that make a
resumed run repeat exactly.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed, then
renamed over the old one: a crash at any moment leaves either the old checkpoint or the new one,
never a torn file. Loading uses ``torch.load(weights_only=True)``, which refuses to run code. The
trainer saves through a :class:`Writer`: the snapshot is taken at once, the write, fsync and rename
(as safe as ever) happen in a background thread while training goes on, and a write that fails is
raised at the next save or at the end of training.

The fallback. A file can still be damaged after it was written whole: a disk that lied about fsync
and lost power, a copy of the run directory cut short, a file emptied by hand. So the trainer saves
``last.pt`` with ``keep_previous=True``: once the new checkpoint is whole in its temporary file, the
old ``last.pt`` is hard-linked as ``last.prev.pt`` (:func:`previous_path`), then the new one renamed
over ``last.pt``, so ``last.pt`` is whole at every moment. Where the file system has no hard links,
the old file is renamed instead; a crash between the two renames then leaves no ``last.pt`` but a
whole ``last.prev.pt``, and the next save leaves that one alone.

Resuming reads with :func:`load_latest`: ``last.pt`` when it loads and holds every key the caller
needs; otherwise a warning names the damaged (or missing) file and ``last.prev.pt`` is read instead,
so the run goes on from the checkpoint before and repeats the steps since. When neither file can be
read, a :class:`~rnnkit.errors.TrainingError` names each damaged file and says to train again. A
run that finishes removes ``last.prev.pt`` (:func:`drop_previous`), leaving ``last.pt`` and
``best.pt``; the fallback guards the runs that stopped on the way.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.errors import TrainingError, warn_user

CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | Path, keep_previous: bool = False) -> Path:
    """torch.save to ``path`` via a temporary file, fsync and rename.

    With ``keep_previous`` the file it replaces is kept as :func:`previous_path` (``last.prev.pt``).
    """
    return _write(_serialise(obj), Path(path), keep_previous)


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write(data: bytes, path: Path, keep_previous: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            _keep(path, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


class Writer:
    """Checkpoints saved as :func:`atomic_save` does, the disk's part (write, fsync, rename) done by a
    background thread so that training does not wait for the disk.

    ``save`` takes the snapshot at once (the object is serialised in the caller's thread, so later
    steps cannot change it) and queues it; files are written in the order they were saved, and a
    newer save of a path still waiting replaces the older one. ``wait`` returns once everything
    saved is on disk; a write that failed (a full disk) is raised by ``wait`` or by the next
    ``save``, and leaves the previous file whole. The thread is not a daemon: a process that ends
    (Ctrl-C included) finishes the write under way first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[bytes, Path, bool]] = deque()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, obj: Any, path: str | Path, keep_previous: bool = False) -> None:
        self._raise_failure()
        item = (_serialise(obj), Path(path), keep_previous)
        with self._lock:
            waiting = [entry for entry in self._pending if entry[1] == item[1]]
            for entry in waiting:
                self._pending.remove(entry)
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="rnnkit-checkpoints")
                self._thread.start()

    def wait(self, raise_failure: bool = True) -> None:
        thread = self._thread
        if thread is not None:
            _join(thread, self._drain)
        if raise_failure:
            self._raise_failure()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                data, path, keep_previous = self._pending.popleft()
            try:
                _write(data, path, keep_previous)
            except BaseException as error:  # handed to the training thread
                self._error = self._error or error

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise TrainingError(
                f"a checkpoint could not be written ({error}); the one before it is kept whole"
            ) from error


def _join(thread: threading.Thread, drain) -> None:
    """Wait for ``thread``. A Ctrl-C that lands while ``Thread.start`` waits for the new thread
    leaves one that is about to run (join then works a moment later) or, caught before the thread
    was made, one that never will: after a second, ``drain`` writes what is pending here instead."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            thread.join()
            return
        except RuntimeError:  # "cannot join thread before it is started"
            if time.monotonic() > deadline:
                drain()
                return
            time.sleep(0.01)


def _keep(path: Path, previous: Path) -> None:
    """``previous`` becomes the file at ``path`` while ``path`` stays in place (a hard link, renamed
    over the old ``previous``); where links are not supported, ``path`` is renamed to it."""
    link = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
    except OSError:
        os.replace(path, previous)
        return
    os.replace(link, previous)


def previous_path(path: str | Path) -> Path:
    """Where ``atomic_save(..., keep_previous=True)`` keeps the file it replaced: last.pt -> last.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def drop_previous(path: str | Path) -> None:
    """Remove the kept previous checkpoint of ``path``, if there is one."""
    previous_path(path).unlink(missing_ok=True)


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_latest(
    path: str | Path, keys: Collection[str], warn: bool = True
) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint at ``path``, or the previous one when ``path`` is damaged or missing.

    A checkpoint is damaged when it does not load or lacks one of ``keys``. Returns the checkpoint
    and the file it came from, after a warning (when ``warn``) if that is the previous one; None when
    neither file exists. Raises TrainingError naming each damaged file when none can be read.
    """
    path = Path(path)
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        saved, problem = _read(candidate, keys)
        if problem is None:
            if candidate != path and warn:
                damage = "; ".join(problems) or f"{path} is missing (a crash while it was being replaced?)"
                warn_user(f"{damage}: resuming from {candidate}, the checkpoint before it")
            return saved, candidate
        problems.append(f"{candidate} {problem}")
    if not problems:
        return None
    raise TrainingError(
        f"no checkpoint to resume from can be read: {'; '.join(problems)}. Train the run again from "
        f"the start (`rnnkit train` with --overwrite replaces it), or remove {path.parent.parent}"
    )


def _read(path: Path, keys: Collection[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(checkpoint, None), or (None, what is wrong with the file)."""
    if path.stat().st_size == 0:
        return None, "is empty"
    try:
        saved = load(path)
    except Exception as error:  # torch raises RuntimeError, EOFError or UnpicklingError on a torn file
        first = str(error).split(". ")[0].strip() or type(error).__name__
        return None, f"cannot be read (torch.load: {first})"
    if not isinstance(saved, dict):
        return None, f"holds a {type(saved).__name__}, not a checkpoint"
    missing = [key for key in keys if key not in saved]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    return saved, None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in types weights_only loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
