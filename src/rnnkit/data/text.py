"""Text data from the files people have: labelled tables, a folder per class, plain-text corpora.

    data = read_labelled("reviews.csv", text_column="review", label_column="sentiment")
    codec = TextCodec.fit(data.texts, level="word", min_freq=2)
    labels = Labels.fit(data.labels)
    dataset = TextDataset([codec.encode(t) for t in data.texts], labels.encode(data.labels))
    # Trainer(..., collate=pad_collate): Batch(inputs (B, T) long, targets, lengths (B,))

    codec = TextCodec.fit(corpus_chunks("book.txt"), level="char")     # streamed, never read whole
    ids = encode_corpus("book.txt", codec, "runs/lm/book.ids")         # token ids on disk, memory-mapped
    stream = TokenStream(ids, batch_size=32, seq_len=128)               # a lazy Stream for the Trainer

Every reader decodes with ``encoding`` (default UTF-8, a leading byte-order mark dropped) and names
the file, the byte offset and the fix when a byte cannot be decoded. Plain text is read with universal
newlines (``\\r\\n`` and ``\\r`` become ``\\n``), the same way by :func:`read_text` and the streamed
corpus functions.
"""

from __future__ import annotations

import codecs
import difflib
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.data.batch import Batch, Stream
from rnnkit.data.tables import require_columns
from rnnkit.data.vocab import TextCodec, Vocab
from rnnkit.errors import ConfigError, DataError, ShapeError

TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t"}
JSON_LINES = (".jsonl", ".json")
_CUT_SPACE = frozenset(" \t\n\r\f\v")  # whitespace to every tokeniser's definition (Python, Rust, regex)
_SHOWN = 5  # rows, files or labels named in one message
_BLOCK = 1 << 20  # bytes read at a time when searching a file for an undecodable byte

# ---------------------------------------------------------------- reading files


@dataclass
class LabelledTexts:
    """Texts and their labels, in file order: a label is a class name, or a list of names (multi-label).

    ``labels`` is None when the reader was given no label column.
    """

    texts: list[str]
    labels: list[str] | list[list[str]] | None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def multilabel(self) -> bool:
        return bool(self.labels) and isinstance(self.labels[0], list)


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
    require_columns(pd.DataFrame(columns=columns), [c for c in (text_column, label_column) if c], path.name)
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


def corpus_chunks(
    path: str | Path, encoding: str = "utf-8", chunk_chars: int = 1 << 20, split_anywhere: bool = False
) -> Iterator[str]:
    """A text file as pieces of about ``chunk_chars`` characters, read one at a time.

    Each piece ends just before a space, tab or newline that follows a non-space character, so word
    and BPE tokens are never cut and tokenising the pieces one by one gives exactly the tokens of the
    whole text. A stretch with no whitespace grows one piece until whitespace comes, unless
    ``split_anywhere`` (for characters, where any cut is fine).
    """
    path = _existing(path)
    _check_encoding(encoding)
    if chunk_chars < 1:
        raise ConfigError(f"chunk_chars must be >= 1, got {chunk_chars}")
    carry, start = "", True
    try:
        with open(path, encoding=encoding) as file:
            while piece := file.read(chunk_chars):
                if start:
                    piece, start = piece.removeprefix("\ufeff"), False
                buffer = carry + piece
                cut = _last_cut(buffer, len(carry))
                if cut == 0 and split_anywhere:
                    cut = len(buffer)
                if cut:
                    yield buffer[:cut]
                carry = buffer[cut:]
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None
    if carry:
        yield carry


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A whole plain-text file (for a corpus that fits in memory; else :func:`corpus_chunks`)."""
    text = "".join(corpus_chunks(path, encoding))
    if not text.strip():
        raise DataError(f"{path} holds no text (empty or only whitespace)")
    return text


def require_texts(texts: Sequence[str], source: str = "the input") -> None:
    """A DataError naming the texts (1-based) that are empty or only whitespace, if any."""
    blank = [i + 1 for i, text in enumerate(texts) if not text.strip()]
    if not texts:
        raise DataError(f"{source} holds no text: give at least one")
    if blank:
        which = f"text {blank[0]} is" if len(blank) == 1 else f"texts {_some(blank)} are"
        raise DataError(
            f"{source}: {which} empty or only whitespace (counted from 1): "
            "give each one at least one non-space character"
        )


# ---------------------------------------------------------------- labels


class Labels:
    """Class names <-> ids, classes sorted (numbers by value: "2" before "10"); multi-label as multi-hot.

    Example:
        >>> labels = Labels.fit(["pos", "neg", "pos"])
        >>> labels.classes, labels.encode(["neg", "pos"]).tolist()
        (['neg', 'pos'], [0, 1])
        >>> Labels.fit([["drama"], ["comedy", "drama"]]).encode([["comedy"]]).tolist()
        [[1.0, 0.0]]
    """

    def __init__(self, classes: Sequence[str], multilabel: bool = False) -> None:
        self.classes = sorted({str(c) for c in classes}, key=class_order)
        self.multilabel = multilabel
        self.ids = {name: i for i, name in enumerate(self.classes)}

    @classmethod
    def fit(cls, labels: Sequence[str] | Sequence[Sequence[str]]) -> Labels:
        """The classes of ``labels``: multi-label when every label is a list of names."""
        labels = list(labels)
        if not labels:
            raise DataError("no labels to learn the classes from")
        multilabel = isinstance(labels[0], list | tuple)
        names = chain.from_iterable(labels) if multilabel else labels
        fitted = cls(list(names), multilabel)
        if not multilabel and len(fitted) < 2:
            raise DataError(f"the labels hold a single class {fitted.classes}: a classifier needs at least 2")
        return fitted

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, labels: Sequence[str] | Sequence[Sequence[str]]) -> Tensor:
        """(N,) long class ids, or (N, C) float multi-hot rows for multi-label."""
        if not self.multilabel:
            return torch.tensor([self._id(label, i) for i, label in enumerate(labels)], dtype=torch.long)
        hot = torch.zeros(len(labels), len(self.classes))  # (N, C)
        for i, names in enumerate(labels):
            if not isinstance(names, list | tuple):
                raise DataError(f"example {i} has label {names!r}; multi-label examples need a list of names")
            hot[i, [self._id(name, i) for name in names]] = 1.0
        return hot

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.classes[int(i)] for i in ids]

    def _id(self, label: Any, index: int) -> int:
        found = self.ids.get(str(label))
        if found is None:
            near = difflib.get_close_matches(str(label), self.classes, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(
                f"unknown label {label!r} (example {index}){hint}; the known labels are {self.classes}: "
                "fix the label, or fit the labels on data that holds it"
            )
        return found

    def state_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "multilabel": self.multilabel}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Labels:
        return cls(state["classes"], state["multilabel"])


def class_order(name: str) -> tuple:
    """Sort key of class names: numbers by value first, then the rest alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


# ---------------------------------------------------------------- datasets and batches


class TextDataset(Dataset):
    """Token id sequences and their targets: item i is (ids (T_i,) long, target).

    The ids are kept in one flat int64 array (not one Python list per text); ``lengths`` (N,) holds
    each sequence's length, for :func:`bucket_order`.
    """

    def __init__(self, ids: Sequence[Sequence[int]], targets: Tensor | Sequence) -> None:
        self.lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))  # (N,)
        empty = np.flatnonzero(self.lengths == 0).tolist()
        if empty:
            raise DataError(
                f"sequences {_some(empty)} (counted from 0) have no tokens: drop empty texts before encoding"
            )
        self.targets = torch.as_tensor(targets)
        if len(self.targets) != len(ids):
            raise ShapeError(f"{len(ids)} sequences but {len(self.targets)} targets; give one target each")
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])  # (N + 1,)
        self.flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self.lengths)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {n} sequences")
        index %= n
        start, end = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(self.flat[start:end]), self.targets[index]


def pad_collate(examples: Sequence[tuple[Tensor, Tensor]], pad_id: int = Vocab.pad_id) -> Batch:
    """(ids (T_i,), target) examples -> Batch(inputs (B, T_max) long, targets, lengths (B,)).

    Inputs are padded with ``pad_id`` after each sequence's end; targets are stacked as they are.
    """
    if not examples:
        raise DataError("cannot collate an empty list of examples")
    sequences, targets = zip(*examples, strict=True)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)  # (B,)
    inputs = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True, padding_value=pad_id)
    return Batch(inputs, torch.stack(targets), lengths)  # inputs (B, T_max)


def bucket_order(
    order: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_size: int, pool: int = 50, seed: int = 0
) -> list[int]:
    """``order`` regrouped so each run of ``batch_size`` indices holds similar lengths.

    ``order`` (an epoch's shuffled indices) is cut into pools of ``batch_size * pool``; each pool is
    sorted by length and cut into batches, and the batches are shuffled (seeded), so batches differ
    from epoch to epoch while padding stays small. The one partial batch, if any, stays last, so the
    batch boundaries of a loader reading ``batch_size`` at a time fall between the buckets. The result
    is a permutation of ``order``: nothing dropped or repeated.
    """
    if batch_size < 1 or pool < 1:
        raise ConfigError(f"batch_size and pool must be >= 1, got {batch_size} and {pool}")
    lengths = np.asarray(lengths)
    span = batch_size * pool
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        part = np.asarray(order[start : start + span], dtype=np.int64)
        part = part[np.argsort(lengths[part], kind="stable")]  # by length, within the pool
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    tail = batches.pop() if batches and len(batches[-1]) < batch_size else []
    shuffled = np.random.default_rng(seed).permutation(len(batches))
    return [i for k in shuffled for i in batches[k]] + tail


def padding_fraction(order: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_size: int) -> float:
    """The share of padded positions when ``order`` is read ``batch_size`` at a time and padded per batch."""
    lengths = np.asarray(lengths)
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[np.asarray(order[start : start + batch_size], dtype=np.int64)]
        padded += int(batch.max()) * len(batch)
        real += int(batch.sum())
    return 1.0 - real / padded if padded else 0.0


# ---------------------------------------------------------------- language-model corpora


def encode_corpus(
    path: str | Path,
    codec: TextCodec,
    out_path: str | Path,
    encoding: str = "utf-8",
    chunk_chars: int = 1 << 20,
) -> np.memmap:
    """Token ids of a text file, written to ``out_path`` chunk by chunk; returned memory-mapped, read-only.

    Ids are uint16 when the vocabulary fits (65,536 tokens or fewer), else uint32. The ids equal
    ``codec.encode(read_text(path))``, but the file is never read whole (see :func:`corpus_chunks`).
    """
    dtype = np.uint16 if len(codec.vocab) <= 1 << 16 else np.uint32
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".part")
    count = 0
    try:
        with open(partial, "wb") as file:
            for chunk in corpus_chunks(path, encoding, chunk_chars, split_anywhere=codec.level == "char"):
                ids = np.asarray(codec.encode(chunk), dtype=dtype)
                ids.tofile(file)
                count += ids.size
        if count == 0:
            raise DataError(f"{path} holds no text (empty or only whitespace)")
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return np.memmap(out_path, dtype=dtype, mode="r")


class TokenStream(Stream):
    """A token corpus as a lazy :class:`Stream` of (inputs, next-token targets) for truncated BPTT.

    The ids are cut into ``batch_size`` contiguous rows (the usual LM batchify; the last
    ``len(ids) % batch_size`` tokens are dropped). Batch i holds columns [i*L, (i+1)*L) of every row
    as inputs (B, L) and the same shifted by one token as targets (B, L), both int64 and built only
    when indexed, so a memory-mapped corpus is never read whole. Row b of batch i+1 continues row b of
    batch i; ``reset`` is all True in batch 0 and all False after. The last batch is shorter when the
    columns do not divide by ``seq_len`` (kept, so evaluation sees every token), or dropped with
    ``drop_last``.
    """

    def __init__(
        self, ids: np.ndarray | Sequence[int], batch_size: int, seq_len: int, drop_last: bool = False
    ) -> None:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ShapeError(f"token ids must be a 1-D integer array, got shape {ids.shape} of {ids.dtype}")
        if batch_size < 1 or seq_len < 1:
            raise ConfigError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        columns = len(ids) // batch_size
        steps = columns - 1  # the last column of each row is only a target
        count = steps // seq_len if drop_last else math.ceil(steps / seq_len)
        if count < 1:
            raise DataError(
                f"{len(ids)} tokens are too few for batch_size {batch_size} and seq_len {seq_len}: need "
                f"at least {batch_size * ((seq_len if drop_last else 1) + 1)}; use more text or smaller sizes"
            )
        self.rows = ids[: columns * batch_size].reshape(batch_size, columns)  # (B, columns), a view
        self.batch_size, self.seq_len, self.count, self.steps = batch_size, seq_len, count, steps

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(f"batch {index} is out of range for a stream of {self.count} batches")
        index = int(index) % self.count
        start = index * self.seq_len
        end = min(start + self.seq_len, self.steps)
        window = np.array(self.rows[:, start : end + 1], dtype=np.int64)  # (B, L + 1), a copy
        window = torch.from_numpy(window)
        reset = torch.full((self.batch_size,), index == 0)  # (B,)
        return Batch(window[:, :-1], window[:, 1:], reset=reset)  # inputs, targets (B, L)

    @property
    def tokens(self) -> int:
        """How many target tokens one pass over the stream predicts."""
        return self.batch_size * min(self.steps, self.count * self.seq_len)


# ---------------------------------------------------------------- pretrained vectors


def read_vectors(
    path: str | Path, vocab: Vocab, encoding: str = "utf-8", seed: int = 0
) -> tuple[Tensor, int]:
    """Embeddings (V, E) for ``vocab`` from a word2vec/GloVe text file, and how many words were found.

    One word and E numbers per line, separated by single spaces, after an optional ``count E`` header.
    A word in the vocabulary takes its vector; failing an exact match, a case variant's (the first in
    the file: GloVe's "The" serves a lower-cased "the"). Words not found, and ``<unk>``, ``<bos>``,
    ``<eos>``, are drawn from normal(0, std of the found vectors), seeded; ``<pad>`` is zeros. The file
    is read line by line and only the vocabulary's rows are kept.
    """
    path = _existing(path)
    _check_encoding(encoding)
    weights: np.ndarray | None = None
    match = np.zeros(len(vocab), dtype=np.int8)  # 0 not found, 1 by case variant, 2 exact
    dim = None
    try:
        with open(path, encoding=encoding) as file:
            for number, line in enumerate(file, 1):
                line = line.rstrip("\r\n ")
                if not line:
                    continue
                word, _, rest = line.partition(" ")
                if number == 1 and word.isdigit() and rest.isdigit():
                    dim = int(rest)  # the word2vec header: count, dimension
                    continue
                fields = rest.count(" ") + 1 if rest else 0
                dim = fields if dim is None else dim
                if not fields:
                    raise DataError(f"{path.name} line {number} ({word!r}) holds a word and no numbers")
                if fields != dim:
                    raise DataError(
                        f"{path.name} line {number} ({word!r}) has {fields} numbers, but the vectors have "
                        f"{dim}: a word2vec/GloVe text file holds a word and {dim} numbers per line"
                    )
                exact = vocab.ids.get(word)
                index = exact if exact is not None else vocab.ids.get(word.lower())
                if index is None or match[index] == 2 or (exact is None and match[index]):
                    continue
                weights = np.zeros((len(vocab), dim), dtype=np.float32) if weights is None else weights
                try:
                    weights[index] = np.array(rest.split(" "), dtype=np.float32)
                except ValueError:
                    raise DataError(
                        f"{path.name} line {number} ({word!r}) holds a value that is not a number"
                    ) from None
                match[index] = 2 if exact is not None else 1
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None
    found = int(np.count_nonzero(match))
    if weights is None or dim is None:
        raise DataError(
            f"none of the vocabulary's {len(vocab)} tokens has a vector in {path.name}"
            + ("" if dim else " (it holds no vectors)")
            + ": check the file, and that it suits the tokeniser (word level; lower-casing)"
        )
    missing = np.flatnonzero(match == 0)
    std = float(weights[match > 0].std()) or 0.1
    weights[missing] = np.random.default_rng(seed).normal(0.0, std, (len(missing), dim))
    weights[vocab.pad_id] = 0.0
    return torch.from_numpy(weights), found


# ---------------------------------------------------------------- helpers


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


def _table_records(content: str, path: Path, sep: str) -> tuple[list[int], list[str], list[dict]]:
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


def _some(numbers: list) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOWN])
    return shown + (f" and {len(numbers) - _SHOWN} more" if len(numbers) > _SHOWN else "")
