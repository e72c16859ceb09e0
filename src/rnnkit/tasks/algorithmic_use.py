"""Using a trained algorithmic model: what it outputs for a sequence you write.

    model = rnnkit.load("runs/copy_ntm/bundle")
    model.predict("10110010 01100001 11110000")      # copy: {'input', 'output', 'expected', 'bits_wrong'}
    model.predict("1011 0110", repeats=3)            # repeat copy: the output, and 'end' (its end step)
    model.predict("101 011 | 110 000 | 001 111", query=1)   # associative recall: items split by '|'

A sequence is its vectors as strings of 0s and 1s, ``bits`` characters each, split by spaces; an
associative-recall item is several such vectors (``item_length`` of them), items split by ``|``.
The model reads the input the task builds from it (:mod:`rnnkit.data.algorithmic`), and its output
steps, rounded, come back as the same kind of string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rnnkit.data.algorithmic import Example, associative_recall_example, copy_example, repeat_copy_example
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.algorithmic import bits_wrong


class AlgorithmicPredictor(Predictor):
    """A trained copy, repeat-copy or associative-recall model: ``predict`` runs it on a sequence."""

    verbs = (*Predictor.verbs, "predict")

    def predict(self, inputs: str | Sequence[str], repeats: int = 1, query: int = 0, **options) -> Any:
        """The model's rounded output for one written sequence (a dict), or for each of a list."""
        if options:
            raise ConfigError(f"algorithmic predict takes repeats and query only; got {sorted(options)}")
        if isinstance(inputs, str):
            return self._run(inputs, repeats, query)
        return [self._run(text, repeats, query) for text in inputs]

    def format(self, result: dict[str, Any]) -> str:
        return f"{result['output']}  ({result['bits_wrong']} bits wrong)"

    @torch.no_grad()
    def _run(self, text: str, repeats: int, query: int) -> dict[str, Any]:
        c = self.data_config
        example = self._example(text, repeats, query)
        device = next(self.model.parameters()).device
        probs = self.model.predict(example.inputs[None].to(device))[0].cpu()  # (T, O)
        out, expected = (probs[example.mask] > 0.5).int(), example.targets[example.mask].int()  # (steps, O)
        wrong = int(bits_wrong(probs[None], example.targets[None], example.mask[None])[0])
        result = {
            "input": text,
            "output": _write(out[:, : c.bits]),
            "expected": _write(expected[:, : c.bits]),
        }
        if c.problem == "repeat_copy":
            ends = torch.nonzero(out[:, c.bits]).flatten().tolist()
            result["output"] = _write(out[: ends[0] if ends else len(out), : c.bits])
            result["expected"] = _write(expected[:-1, : c.bits])
            result["end"] = ends[0] if ends else None  # the output step of the end marker, None if never
        return result | {"bits_wrong": wrong}

    def _example(self, text: str, repeats: int, query: int) -> Example:
        c = self.data_config
        if c.problem == "associative_recall":
            items = [_read(item, c.bits) for item in text.split("|")]
            if len({len(item) for item in items}) != 1 or len(items[0]) != c.item_length:
                raise DataError(f"every item must hold item_length={c.item_length} vectors, got {text!r}")
            return associative_recall_example(items, query)
        if "|" in text:
            raise DataError(f"'|' splits associative-recall items; a {c.problem} sequence has none: {text!r}")
        sequence = _read(text, c.bits)
        if c.problem == "copy":
            return copy_example(sequence)
        return repeat_copy_example(sequence, repeats, c.max_repeats)


def _read(text: str, bits: int) -> list[list[int]]:
    vectors = text.split()
    if not vectors or any(len(v) != bits or set(v) - {"0", "1"} for v in vectors):
        raise DataError(f"write each vector as {bits} characters 0 or 1, split by spaces; got {text!r}")
    return [[int(ch) for ch in v] for v in vectors]


def _write(rows: torch.Tensor) -> str:
    return " ".join("".join(str(int(v)) for v in row) for row in rows)
