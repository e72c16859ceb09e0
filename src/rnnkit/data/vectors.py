"""Pretrained word vectors (word2vec or GloVe text files) as an embedding matrix for a vocabulary.

weights, found = read_vectors("glove.6B.100d.txt", codec.vocab)    # (V, 100) float32, words found
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.encoding import _check_encoding, _existing, _undecodable
from rnnkit.errors import DataError

if TYPE_CHECKING:
    from rnnkit.data.vocab import Vocab


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
