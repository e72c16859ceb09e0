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


def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    floats: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> pd.DataFrame:
    """A DataFrame from a .csv, .tsv, .parquet or .jsonl file (JSON: one object per line).

    ``columns``: read only these (a missing one is named with the nearest and the file's columns);
    ``floats`` are read as float32 and ``categories`` as pandas categoricals, so a table of many
    series costs 4 bytes a value and an id column a small integer a row (CSV and parquet).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read {path.name}: expected one of {sorted(READERS)}")
    function, options = reader
    if columns is not None and function != "read_json":
        require_names(_column_names(path, function, options), columns, f"{path.name}")
        key = "usecols" if function == "read_csv" else "columns"
        options = {**options, key: list(dict.fromkeys(columns))}
        if function == "read_csv":
            options["dtype"] = {**dict.fromkeys(floats, "float32"), **dict.fromkeys(categories, "category")}
    try:
        try:
            frame = getattr(pd, function)(path, **options)
        except ValueError:  # a text cell in a float column: read it as it is, for the check that names it
            if "dtype" not in options:
                raise
            options["dtype"] = dict.fromkeys(categories, "category")
            frame = getattr(pd, function)(path, **options)
    except ImportError as error:  # parquet needs pyarrow
        raise DataError(
            f"reading {path.name} needs an extra package: {error}; pip install 'rnnkit[parquet]'"
        ) from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path} could not be parsed as {path.suffix[1:]}: {error}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    if function == "read_parquet":  # (a CSV's columns came so; a float column with text stays as read)
        numeric = [c for c in floats if pd.api.types.is_numeric_dtype(frame[c])]
        frame = frame.astype({**dict.fromkeys(numeric, "float32"), **dict.fromkeys(categories, "category")})
    return frame


def _column_names(path: Path, function: str, options: dict) -> list[str]:
    """The file's column names, read from its header (CSV) or schema (parquet), not its rows."""
    import pandas as pd

    try:
        if function == "read_parquet":
            import pyarrow.parquet

            return list(pyarrow.parquet.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0, **options).columns)
    except ImportError as error:
        raise DataError(
            f"reading {path.name} needs an extra package: {error}; pip install 'rnnkit[parquet]'"
        ) from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as error:
        raise DataError(f"{path} could not be parsed as {path.suffix[1:]}: {error}") from None


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
