"""Typed errors. Every message says what was expected, what came, and how to fix it."""

from __future__ import annotations

import difflib
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path


class RnnkitError(Exception):
    """Base class of every error rnnkit raises on purpose."""


class ConfigError(RnnkitError, ValueError):
    """An option, name or configuration value that rnnkit cannot use."""


class ShapeError(RnnkitError, ValueError):
    """A tensor whose rank, size or count does not fit what the module expects."""


class DTypeError(RnnkitError, TypeError):
    """A tensor whose dtype differs from the module's parameters."""


class DataError(RnnkitError, ValueError):
    """Data that cannot be used as given (NaN, empty, missing column, ...)."""


def unknown_name(kind: str, got: str, valid: Iterable[str]) -> ConfigError:
    """A ConfigError for an unknown name, suggesting the nearest valid one."""
    valid = sorted(valid)
    near = difflib.get_close_matches(str(got), valid, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return ConfigError(f"unknown {kind} {got!r}; expected one of {valid}.{hint}")


class TrainingError(RnnkitError, RuntimeError):
    """Training cannot go on as configured (a non-finite loss or gradient, a missing metric, ...)."""


def warn_user(message: str) -> None:
    """A UserWarning for a legal but odd setting, pointing at the first line outside rnnkit."""
    package = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)
