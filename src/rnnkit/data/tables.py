"""Tables from the files people have: CSV, TSV, parquet and JSON lines, read with pandas."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from rnnkit.errors import DataError

READERS = {
    ".csv": pd.read_csv,
    ".tsv": lambda path: pd.read_csv(path, sep="\t"),
    ".parquet": pd.read_parquet,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".json": lambda path: pd.read_json(path, lines=True),
}


def read_table(path: str | Path) -> pd.DataFrame:
    """A DataFrame from a .csv, .tsv, .parquet or .jsonl file (JSON: one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read {path.name}: expected one of {sorted(READERS)}")
    try:
        frame = reader(path)
    except ImportError as error:  # parquet needs pyarrow
        raise DataError(
            f"reading {path.name} needs an extra package: {error}; pip install 'rnnkit[parquet]'"
        ) from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path} could not be parsed as {path.suffix[1:]}: {error}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: str = "the table") -> None:
    """A DataError naming each missing column, the nearest existing one and all that exist."""
    available = [str(c) for c in frame.columns]
    for column in columns:
        if column not in frame.columns:
            near = difflib.get_close_matches(column, available, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(f"{source} has no column {column!r}{hint}; its columns are {available}")
