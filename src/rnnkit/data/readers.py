"""Labelled texts from the files people have: CSV, TSV and JSON-lines tables, a folder per class, plain text.

    data = read_labelled("reviews.csv", text_column="review", label_column="sentiment")
    codec = TextCodec.fit(data.texts, level="word", min_freq=2)
    labels = Labels.fit(data.labels)
    dataset = TextDataset([codec.encode(t) for t in data.texts], labels.encode(data.labels))

Every reader decodes as described in :mod:`rnnkit.data.encoding` and names the file, the byte offset
and the fix when a byte cannot be decoded.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnkit.data.corpus import corpus_chunks
from rnnkit.data.encoding import _SHOWN, _decoded, _some
from rnnkit.data.labels import LabelledTexts, class_order
from rnnkit.data.tables import require_names
from rnnkit.errors import DataError

TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t"}
JSON_LINES = (".jsonl", ".json")


def read_labelled(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = "label",
    encoding: str = "utf-8",
    multilabel_sep: str | None = None,
) -> LabelledTexts:
    """Texts and labels from a .csv, .tsv or .jsonl file (JSON lines: one object per line).

    Every cell is read as a string (a review reading "NA" stays "NA"). Multi-label rows: a JSON list
    (``"label": ["drama", "comedy"]``), or, with ``multilabel_sep="|"``, a string such as
    ``drama|comedy`` in any format; an empty multi-label cell means no labels. ``label_column=None``
    reads texts only (labels None), for prediction.

    Raises DataError naming the rows with an empty text or no label, the nearest column to a missing
    one, or the byte offset of an undecodable byte.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (*TABLE_SEPARATORS, *JSON_LINES):
        raise DataError(
            f"cannot read labelled texts from {path.name}: expected one of "
            f"{sorted([*TABLE_SEPARATORS, *JSON_LINES])}"
        )
    content = _decoded(path, encoding)
    if suffix in JSON_LINES:
        numbers, columns, records = _json_records(content, path)
        where = "lines {}".format
    else:
        numbers, columns, records = _table_records(content, path, TABLE_SEPARATORS[suffix])
        where = "rows {} (counted from 1 after the header)".format
    require_names(columns, [c for c in (text_column, label_column) if c], path.name)
    texts = [_cell_text(record.get(text_column)) for record in records]
    blank = [n for n, text in zip(numbers, texts, strict=True) if not text.strip()]
    if blank:
        raise DataError(
            f"{path.name}: {where(_some(blank))} have no text in column {text_column!r} "
            "(empty or only whitespace): fill or remove them"
        )
    if label_column is None:
        return LabelledTexts(texts, None, str(path))
    labels = [_cell_label(record.get(label_column), multilabel_sep) for record in records]
    missing = [n for n, label in zip(numbers, labels, strict=True) if label is None]
    if missing:
        raise DataError(
            f"{path.name}: {where(_some(missing))} have no label in column {label_column!r}: "
            "label them or remove them"
        )
    kinds = [isinstance(label, list) for label in labels]
    if any(kinds) and not all(kinds):
        single = [n for n, k in zip(numbers, kinds, strict=True) if not k]
        raise DataError(
            f"{path.name}: column {label_column!r} mixes label lists (multi-label) and single labels "
            f"(single at {where(_some(single))}): give every row a list"
        )
    return LabelledTexts(texts, labels, str(path))


def read_class_folders(
    root: str | Path, classes: Sequence[str] | None = None, encoding: str = "utf-8"
) -> LabelledTexts:
    """One subfolder of ``root`` per class, one example per ``*.txt`` file: the IMDB layout.

    ``classes`` None takes every subfolder holding .txt files. Name them where some subfolder is not a
    class: IMDB's ``aclImdb/train`` also holds ``unsup/`` (unlabelled reviews), so read it with
    ``read_class_folders("aclImdb/train", classes=["neg", "pos"])``. Classes in sorted order, files
    in name order within each: the result never depends on the file system's listing order.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root} is not a folder: expected a folder with one subfolder of .txt files per class"
        )
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    holding = sorted(name for name, p in folders.items() if any(p.glob("*.txt")))
    if classes is None:
        if not holding:
            raise DataError(
                f"{root} has no subfolder with .txt files; expected one per class, e.g. {root}/pos/*.txt"
            )
        classes = holding
    for name in classes:
        if name not in holding:
            near = difflib.get_close_matches(name, holding, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            what = "holds no .txt files" if name in folders else "is not a subfolder"
            raise DataError(f"class {name!r} {what} of {root}{hint}; the class folders there are {holding}")
    texts, labels, blank = [], [], []
    for name in sorted(classes, key=class_order):
        for file in sorted(folders[name].glob("*.txt")):
            text = _decoded(file, encoding)
            if not text.strip():
                blank.append(str(file))
            texts.append(text)
            labels.append(name)
    if blank:
        raise DataError(f"{len(blank)} files hold no text (empty or only whitespace): {blank[:_SHOWN]}")
    return LabelledTexts(texts, labels, str(root))


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A whole plain-text file (for a corpus that fits in memory; else :func:`corpus_chunks`)."""
    text = "".join(corpus_chunks(path, encoding))
    if not text.strip():
        raise DataError(f"{path} holds no text (empty or only whitespace)")
    return text


def require_texts(texts: Sequence[str], source: str = "the input") -> None:
    """A DataError naming the texts (1-based) that are not texts, or empty or only whitespace, if any."""
    other = [(i + 1, type(text).__name__) for i, text in enumerate(texts) if not isinstance(text, str)]
    if other:
        number, kind = other[0]
        raise DataError(f"{source}: item {number} is a {kind}, not a text; this model reads texts")
    blank = [i + 1 for i, text in enumerate(texts) if not text.strip()]
    if not len(texts):
        raise DataError(f"{source} holds no text: give at least one")
    if blank:
        which = f"text {blank[0]} is" if len(blank) == 1 else f"texts {_some(blank)} are"
        raise DataError(
            f"{source}: {which} empty or only whitespace (counted from 1): "
            "give each one at least one non-space character"
        )


def _table_records(content: str, path: Path, sep: str) -> tuple[list[int], list[str], list[dict]]:
    import pandas as pd  # on use: importing rnnkit.data stays cheap

    try:
        frame = pd.read_csv(io.StringIO(content), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path} could not be parsed as {path.suffix[1:]}: {error}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    return list(range(1, len(frame) + 1)), [str(c) for c in frame.columns], frame.to_dict("records")


def _json_records(content: str, path: Path) -> tuple[list[int], list[str], list[dict]]:
    numbers, records, columns = [], [], {}
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path.name} line {number} is not valid JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path.name} line {number} is not a JSON object: JSON lines hold one object a line"
            )
        numbers.append(number)
        records.append(record)
        columns.update(dict.fromkeys(record))
    if not records:
        raise DataError(f"{path} has no rows")
    return numbers, list(columns), records


def _cell_text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _cell_label(value: Any, sep: str | None) -> str | list[str] | None:
    """A class name, a list of names (multi-label), or None for a missing label."""
    if isinstance(value, list):
        return [_label_name(v) for v in value]
    if value is None or (value == "" and sep is None):
        return None
    name = _label_name(value)
    return [part.strip() for part in name.split(sep) if part.strip()] if sep is not None else name


def _label_name(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
