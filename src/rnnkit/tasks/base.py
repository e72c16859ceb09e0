"""What a task is: how its data becomes datasets, and how its model is judged and used.

A task sits between the data and models it combines and the trainer and CLI that run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from rnnkit.data import stack_pairs


@dataclass
class Prepared:
    """Datasets for one run, the preprocessing state to save, and what evaluation needs beside."""

    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    preprocessing: dict[str, Any]
    collate: Callable = stack_pairs
    extra: dict[str, Any] = field(default_factory=dict)
