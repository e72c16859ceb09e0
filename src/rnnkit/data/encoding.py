"""What every text reader shares: a checked path and encoding, and decode errors that name the byte.

Every reader decodes with ``encoding`` (default UTF-8, a leading byte-order mark dropped) and names
the file, the byte offset and the fix when a byte cannot be decoded. Plain text is read with universal
newlines (``\\r\\n`` and ``\\r`` become ``\\n``), the same way by :func:`rnnkit.data.read_text` and the
streamed corpus functions. The helpers here are private to :mod:`rnnkit.data`; the readers
(``readers.py``), corpora (``corpus.py``) and vectors (``vectors.py``) import them, and they import
nothing of those.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from rnnkit.errors import ConfigError, DataError

_CUT_SPACE = frozenset(" \t\n\r\f\v")  # whitespace to every tokeniser's definition (Python, Rust, regex)
_SHOWN = 5  # rows, files or labels named in one message
_BLOCK = 1 << 20  # bytes read at a time when searching a file for an undecodable byte


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    return path


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"unknown text encoding {encoding!r}; use a Python codec name such as 'utf-8', 'latin-1' "
            "or 'cp1252'"
        ) from None


def _decoded(path: Path, encoding: str) -> str:
    """The whole file decoded, a leading byte-order mark dropped; a DataError naming any bad byte."""
    _check_encoding(encoding)
    data = _existing(path).read_bytes()
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        newlines = data.count(b"\n", 0, error.start)
        raise _decode_error(path, encoding, data[error.start], error.start, newlines) from None


def _undecodable(path: Path, encoding: str) -> DataError:
    """Find, streaming, the first byte of ``path`` that ``encoding`` cannot decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = newlines = 0
    with open(path, "rb") as file:
        while True:
            block = file.read(_BLOCK)
            buffered = decoder.getstate()[0]  # bytes of an unfinished character, kept from the last block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                at = offset - len(buffered) + error.start
                newlines += block.count(b"\n", 0, max(0, error.start - len(buffered)))
                return _decode_error(path, encoding, error.object[error.start], at, newlines)
            if not block:
                break
            offset, newlines = offset + len(block), newlines + block.count(b"\n")
    return DataError(f"{path} could not be decoded as {encoding}")


def _decode_error(path: Path, encoding: str, byte: int, offset: int, newlines: int) -> DataError:
    return DataError(
        f"{path} is not valid {encoding}: byte 0x{byte:02x} at offset {offset} (line {newlines + 1}) "
        f"cannot be decoded; give the file's encoding (the encoding option, e.g. encoding='latin-1' or "
        f"'cp1252'), or save the file as {encoding}"
    )


def _last_cut(buffer: str, start: int) -> int:
    """The last index >= max(start, 1) where whitespace follows a non-space character; 0 if none."""
    for i in range(len(buffer) - 1, max(start, 1) - 1, -1):
        if buffer[i] in _CUT_SPACE and not buffer[i - 1].isspace():
            return i
    return 0


def _some(numbers: list) -> str:
    """The first few of ``numbers`` for a message: "1, 2, 3, 4, 5 and 7 more"."""
    shown = ", ".join(str(n) for n in numbers[:_SHOWN])
    return shown + (f" and {len(numbers) - _SHOWN} more" if len(numbers) > _SHOWN else "")
