"""Labelled numeric recordings of any length (sensor sequences, ECG beats, spoken-vowel features).

Three formats, each read into :class:`Recordings` (one (T_i, C) float32 array and one label per
recording):

- ``.ts``: the UCR/UEA archive's format (the ``sktime`` wheel ships several archives under
  ``sktime/datasets/data/``; this reader needs no sktime). ``#`` lines are comments, ``@`` lines
  the header (``@classLabel true A B C`` lists the classes in order, ``@data`` starts the cases);
  each case is one line of channels separated by ``:``, values by ``,``, the label last. Missing
  values (``?``) and ``@timeStamps true`` are refused with the line that has them.
- ``.npz``: arrays ``values`` (sum of T_i, C), ``lengths`` (N,) and ``labels`` (N,): the
  recordings laid end to end, as ``numpy.savez(path, values=..., lengths=..., labels=...)``
  writes them (no pickled objects).
- a long table (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``): one row per time step, a recording
  id column, an optional time column to order the steps, the channel columns and a label column
  (the same on every row of a recording).

    recordings = read_recordings("BasicMotions_TRAIN.ts")
    recordings = read_recordings("steps.csv", id_column="session", time_column="t", label_column="activity")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.errors import DataError


@dataclass
class Recordings:
    """Recordings (each (T_i, C) float32, T_i >= 1) with their labels (None when read unlabelled, to
    predict); ``classes`` in the file's order where the file declares them (``.ts``), else None."""

    sequences: list[np.ndarray]
    labels: list[str] | None
    channels: list[str]
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, rows: Sequence[int]) -> Recordings:
        return Recordings(
            [self.sequences[i] for i in rows],
            None if self.labels is None else [self.labels[i] for i in rows],
            self.channels,
            self.classes,
        )


def read_recordings(path: str | Path, labelled: bool = True, **columns) -> Recordings:
    """Read ``path`` by its suffix: ``.ts``, ``.npz``, or a long table whose ``columns`` are named as
    :func:`read_long_table`'s keywords (module docs). ``labelled=False`` reads recordings to predict:
    labels are not needed (``@classLabel false``, no ``labels`` array, no label column) and ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if path.suffix == ".ts":
        return read_ts(path, labelled)
    if path.suffix == ".npz":
        return read_npz(path, labelled)
    return read_long_table(path, labelled=labelled, **columns)


def read_ts(path: str | Path, labelled: bool = True) -> Recordings:
    """A UCR/UEA ``.ts`` file (module docs); errors name the line."""
    path = Path(path)
    header: dict[str, str] = {}
    sequences, labels = [], []
    in_data = False
    with open(path, encoding="utf-8", errors="strict") as lines:
        try:
            for number, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                where = f"{path}, line {number}"
                if not in_data:
                    key, _, value = line.partition(" ")
                    if not key.startswith("@"):
                        raise DataError(
                            f"{where}: expected a header line (@...) before @data, got {line[:40]!r}"
                        )
                    key = key[1:].lower()
                    if key == "data":
                        in_data = True
                        has_labels = _check_header(header, path, labelled)
                    else:
                        header[key] = value.strip()
                    continue
                sequence, label = _ts_case(line, has_labels, where)
                sequences.append(sequence)
                labels.append(label)
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not in_data:
        raise DataError(f"{path} has no @data line: is it a .ts file of the UCR/UEA archive?")
    if not sequences:
        raise DataError(f"{path} has no cases after @data")
    widths = {s.shape[1] for s in sequences}
    if len(widths) > 1:
        raise DataError(f"{path}: cases have different numbers of channels {sorted(widths)}")
    classes = header.get("classlabel", "").split()[1:] or None
    if not labelled:
        return Recordings(sequences, None, [f"dim_{c}" for c in range(widths.pop())], classes)
    if classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise DataError(f"{path}: labels {unknown} are not among @classLabel's {classes}")
    names = [f"dim_{c}" for c in range(widths.pop())]
    return Recordings(sequences, labels, names, classes)


def _check_header(header: dict[str, str], path: Path, labelled: bool) -> bool:
    """Whether the cases end with a label; refuses what this reader cannot read."""
    if header.get("timestamps", "false").lower() == "true":
        raise DataError(f"{path}: @timeStamps true is not supported; write the values without time stamps")
    label = header.get("classlabel", "").split()
    if header.get("targetlabel", "").lower().startswith("true"):
        raise DataError(f"{path} holds a regression problem (@targetLabel true): its cases have no classes")
    has_labels = bool(label) and label[0].lower() == "true"
    if labelled and not has_labels:
        raise DataError(f"{path}: @classLabel is not true: a classification file needs a label per case")
    return has_labels


def _ts_case(line: str, has_label: bool, where: str) -> tuple[np.ndarray, str | None]:
    dims, label = line.split(":"), None
    if has_label:
        *dims, label = dims
    if not dims:
        raise DataError(f"{where}: a case needs values and a label separated by ':'")
    try:
        values = [np.array([float(v) for v in d.split(",")], dtype=np.float32) for d in dims]
    except ValueError:
        bad = next(v for d in dims for v in d.split(",") if not _is_number(v))
        raise DataError(f"{where}: {bad.strip()!r} is not a number") from None
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise DataError(f"{where}: the case's channels have different lengths {[len(v) for v in values]}")
    sequence = np.stack(values, axis=1)  # (T, C)
    if not np.isfinite(sequence).all():
        raise DataError(f"{where}: missing or infinite values (? or nan); fill them before training")
    return sequence, None if label is None else label.strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_npz(path: str | Path, labelled: bool = True) -> Recordings:
    """``values`` (sum T_i, C), ``lengths`` (N,) and ``labels`` (N,) from a ``.npz`` (module docs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            needed = ("values", "lengths", "labels") if labelled else ("values", "lengths")
            missing = [k for k in needed if k not in arrays]
            if missing:
                raise DataError(f"{path} lacks the arrays {missing}; it has {sorted(arrays.files)}")
            values, lengths = np.asarray(arrays["values"]), np.asarray(arrays["lengths"])
            labels = np.asarray(arrays["labels"]) if labelled else np.zeros(lengths.shape)
    except (ValueError, OSError) as error:  # not a zip, or pickled objects
        raise DataError(f"{path} cannot be read as a .npz of plain arrays: {error}") from None
    values = values[:, None] if values.ndim == 1 else values
    if values.ndim != 2 or lengths.ndim != 1 or labels.shape != lengths.shape:
        raise DataError(
            f"{path}: expected values (sum of lengths, channels), lengths (N,) and labels (N,), got "
            f"{values.shape}, {lengths.shape} and {labels.shape}"
        )
    if (lengths < 1).any() or int(lengths.sum()) != len(values):
        raise DataError(f"{path}: lengths (each >= 1) must add up to the {len(values)} rows of values")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: values hold NaN or infinity; fill them before training")
    sequences = np.split(values.astype(np.float32), np.cumsum(lengths)[:-1])
    names = [f"dim_{c}" for c in range(values.shape[1])]
    return Recordings(sequences, [str(x) for x in labels] if labelled else None, names)


def read_long_table(
    path: str | Path,
    id_column: str = "id",
    time_column: str | None = None,
    label_column: str = "label",
    channels: Sequence[str] | None = None,
    labelled: bool = True,
) -> Recordings:
    """One row per step: recording id, optional time, channels, label (module docs)."""
    from rnnkit.data.tables import read_table

    path = Path(path)
    frame = read_table(path)
    if not labelled and label_column in frame.columns:
        frame = frame.drop(columns=[label_column])
    needed = [id_column, *([label_column] if labelled else []), *([time_column] if time_column else [])]
    wanted = [*needed, *(channels or [])]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{path} has no column {missing}; its columns are {list(frame.columns)}")
    used = {id_column, label_column, time_column}
    channels = list(channels) if channels else [c for c in frame.columns if c not in used]
    if not channels:
        raise DataError(f"{path} has no channel columns besides {sorted(c for c in used if c)}")
    numeric = frame[channels].apply(lambda column: np.issubdtype(column.dtype, np.number))
    if not numeric.all():
        raise DataError(f"{path}: channel columns {list(numeric.index[~numeric])} are not numeric")
    values = frame[channels].to_numpy(np.float32)
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if bad.size:
        raise DataError(
            f"{path}: rows {(bad[:5] + 2).tolist()} (counting the header as row 1) hold missing values"
        )
    sequences, labels = [], []
    for key, rows in frame.groupby(id_column, sort=False).indices.items():
        if time_column:
            rows = rows[np.argsort(frame[time_column].to_numpy()[rows], kind="stable")]
        sequences.append(values[rows])
        if labelled:
            names = frame[label_column].to_numpy()[rows]
            if len(set(names)) > 1:
                raise DataError(
                    f"{path}: recording {key!r} has more than one label {sorted(map(str, set(names)))}"
                )
            labels.append(str(names[0]))
    if not sequences:
        raise DataError(f"{path} has no rows")
    return Recordings(sequences, labels if labelled else None, channels)
