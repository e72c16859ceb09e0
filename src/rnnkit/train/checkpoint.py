"""Checkpoints written atomically, the previous one kept as a fallback, and the RNG states that make a
resumed run repeat exactly.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed, then
renamed over the old one: a crash at any moment leaves either the old checkpoint or the new one,
never a torn file. Loading uses ``torch.load(weights_only=True)``, which refuses to run code.

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

import os
import random
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            _keep(path, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


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
