"""Tables from the files people have: CSV, TSV, parquet and JSON lines, read with pandas.

pandas is imported when a table is read, not with :mod:`rnnkit.data`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rnnkit.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

READERS = {  # suffix -> (pandas function, its options)
    ".csv": ("read_csv", {}),
    ".tsv": ("read_csv", {"sep": "\t"}),
    ".parquet": ("read_parquet", {}),
    ".jsonl": ("read_json", {"lines": True}),
    ".json": ("read_json", {"lines": True}),
}


def read_table(path: str | Path) -> pd.DataFrame:
    """A DataFrame from a .csv, .tsv, .parquet or .jsonl file (JSON: one object per line)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read {path.name}: expected one of {sorted(READERS)}")
    function, options = reader
    try:
        frame = getattr(pd, function)(path, **options)
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
    require_names(frame.columns, columns, source)


def require_names(present: Sequence, columns: Iterable[str], source: str = "the table") -> None:
    """:func:`require_columns` for a table known only by its column names (``present``)."""
    available = [str(c) for c in present]
    for column in columns:
        if column not in present:
            near = difflib.get_close_matches(column, available, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(f"{source} has no column {column!r}{hint}; its columns are {available}")
