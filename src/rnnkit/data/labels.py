"""Class labels: names <-> ids (multi-hot for multi-label), their sort order, and texts with labels.

data = read_labelled("reviews.csv", text_column="review", label_column="sentiment")   # LabelledTexts
labels = Labels.fit(data.labels)          # classes sorted: numbers by value, then alphabetically
targets = labels.encode(data.labels)      # (N,) long ids, or (N, C) float multi-hot rows
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import DataError, warn_user


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


def stratified_split(
    labels: Sequence, test: float, validation: float, seed: int, what: str = "examples"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded row indices of the training, validation and test parts, stratified by label: each class
    is split in the same shares (multi-label rows by their first label, in a shuffled whole).

    ``test`` is the share of all rows held out (0 when the test part is a file of its own), then
    ``validation`` the share of the rest; ``what`` names the rows in messages ("texts").
    """
    n = len(labels)
    rng = np.random.default_rng(seed)
    keys = [tuple(label)[:1] if isinstance(label, list | tuple) else label for label in labels]
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    parts = 1 + sum(share > 0 for share in (test, validation))
    train, held, tested, rare = [], [], [], []
    for key, rows in groups.items():
        rows = rng.permutation(rows)
        n_test = round(len(rows) * test)
        n_val = round((len(rows) - n_test) * validation)
        if len(rows) < parts:
            rare.append(f"{key!r} ({len(rows)})")
            n_test, n_val = min(n_test, len(rows) - 1), 0  # training sees the class first
        tested += rows[:n_test].tolist()
        held += rows[n_test : n_test + n_val].tolist()
        train += rows[n_test + n_val :].tolist()
    if rare:
        warn_user(
            f"class(es) {', '.join(rare[:5])}{', ...' if len(rare) > 5 else ''} have fewer {what} than the "
            f"{parts} parts (train, validation, test): they cannot be in every part, so the model is "
            "scored on them little or not at all; add examples of these classes or merge them"
        )
    if test > 0 and not tested and len(train) > 1:  # a tiny set whose shares all rounded to 0
        tested.append(train.pop())
    if not train:
        raise DataError(f"{n} {what} leave none for training after the test and validation parts")
    return np.sort(train).astype(int), np.sort(held).astype(int), np.sort(tested).astype(int)
