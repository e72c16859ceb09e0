"""Plain-text corpora for language models: streamed in pieces, encoded to ids on disk, batched lazily.

    codec = TextCodec.fit(corpus_chunks("book.txt"), level="char")     # streamed, never read whole
    ids = encode_corpus("book.txt", codec, "runs/lm/book.ids")         # token ids on disk, memory-mapped
    stream = TokenStream(ids, batch_size=32, seq_len=128)               # a lazy Stream for the Trainer

Text is decoded as described in :mod:`rnnkit.data.encoding` (universal newlines, a leading
byte-order mark dropped, a bad byte named by its offset).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from rnnkit.data.batch import Batch, Stream
from rnnkit.data.encoding import _check_encoding, _existing, _last_cut, _undecodable
from rnnkit.errors import ConfigError, DataError, ShapeError

if TYPE_CHECKING:
    from rnnkit.data.vocab import TextCodec


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
