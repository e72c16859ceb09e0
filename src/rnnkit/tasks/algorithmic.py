"""The NTM paper's algorithmic tasks: copy, repeat copy and associative recall (Graves et al. 2014, 4.1-4.3).

A model reads seeded random binary sequences (:mod:`rnnkit.data.algorithmic` gives the exact
formats), is trained on lengths up to ``max_length`` and tested on given lengths, longer ones
included, to see whether it learnt the algorithm or only the lengths it saw. The measure is the
paper's: bits wrong per sequence, the model's outputs rounded against the targets on the output
steps, by length, beside the all-zeros baseline (every output bit 0; for fair random bits, about
half of them wrong). Plots: that error by length, and for an NTM one example's inputs, outputs and
the heads' write and read weightings over time, as in the paper's figures.

    task: algorithmic
    data: {problem: copy, bits: 8, max_length: 20, eval_lengths: [10, 20, 40, 80]}
    model: {cell: ntm, hidden_size: 100, memory_rows: 128, memory_width: 20}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import DataLoader

from rnnkit.config import Config
from rnnkit.data import Batch
from rnnkit.data.algorithmic import SHORTEST, AlgorithmicDataset, Example, input_size, output_size
from rnnkit.errors import DataError
from rnnkit.models.algorithmic import IGNORE
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task

ONLY_FOR = {"max_repeats": "repeat_copy", "eval_repeats": "repeat_copy", "item_length": "associative_recall"}
BASELINE = "all_zeros"


class AlgorithmicDataConfig(Config):
    """Which problem, its sizes, and the lengths to train and test on (module docs)."""

    problem: Literal["copy", "repeat_copy", "associative_recall"] = "copy"
    bits: int = Field(8, gt=0, description="width of each random binary vector")
    min_length: int | None = Field(
        None, gt=0, description="shortest training length (items for associative recall); None: 1 (2)"
    )
    max_length: int = Field(20, gt=0, description="longest training length (items for associative recall)")
    eval_lengths: list[int] | None = Field(
        None, description="lengths tested; None: max_length / 2, 1, 2 and 4 times max_length"
    )
    train_size: int = Field(10000, gt=0, description="training sequences (an epoch)")
    validation_size: int = Field(256, ge=0, description="sequences at training lengths for early stopping")
    test_size: int = Field(100, gt=0, description="sequences per tested length")
    max_repeats: int = Field(10, gt=0, description="repeat_copy: repeats drawn from 1 .. max_repeats")
    eval_repeats: int | None = Field(None, gt=0, description="repeat_copy: repeats when testing; None: drawn")
    item_length: int = Field(3, gt=0, description="associative_recall: vectors per item")
    seed: int = 0

    @model_validator(mode="after")
    def _lengths_fit(self) -> AlgorithmicDataConfig:
        least = SHORTEST[self.problem]
        if not least <= self.shortest <= self.max_length:
            raise ValueError(
                f"{self.problem} trains on lengths {least} <= min_length <= max_length, got "
                f"min_length={self.shortest}, max_length={self.max_length}"
            )
        if self.eval_lengths is not None and (not self.eval_lengths or min(self.eval_lengths) < least):
            raise ValueError(
                f"eval_lengths must list lengths >= {least} for {self.problem}, got {self.eval_lengths}"
            )
        for key, problem in ONLY_FOR.items():
            if self.problem != problem and getattr(self, key) != type(self).model_fields[key].default:
                raise ValueError(
                    f"{key} applies to problem {problem} only, got problem {self.problem}: drop it"
                )
        return self

    @property
    def shortest(self) -> int:
        return SHORTEST[self.problem] if self.min_length is None else self.min_length

    @property
    def lengths(self) -> list[int]:
        """The tested lengths, ascending."""
        m = self.max_length
        chosen = self.eval_lengths or [m // 2, m, 2 * m, 4 * m]
        return sorted({n for n in chosen if n >= SHORTEST[self.problem]})

    def dataset(self, size: int, low: int, high: int, stream: int, repeats: int | None = None):
        options = {"max_repeats": self.max_repeats, "item_length": self.item_length, "repeats": repeats}
        return AlgorithmicDataset(
            self.problem, size, low, high, self.bits, self.seed, stream=stream, **options
        )


def collate(examples: list[Example]) -> Batch:
    """Examples -> Batch(inputs (B, T, D) zero-padded, targets (B, T, O) with -1 off the mask and on
    padding, lengths (B,))."""
    lengths = torch.tensor([len(e.inputs) for e in examples])
    pad = torch.nn.utils.rnn.pad_sequence
    targets = [e.targets.masked_fill(~e.mask.unsqueeze(-1), IGNORE) for e in examples]  # (T, O) each
    inputs = pad([e.inputs for e in examples], batch_first=True)  # (B, T, D)
    return Batch(inputs, pad(targets, batch_first=True, padding_value=IGNORE), lengths)


def bits_wrong(outputs: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Bits wrong per sequence (B,): outputs (B, T, O) probabilities (or 0/1), rounded at 0.5, against
    targets (B, T, O) on the steps where ``mask`` (B, T) is True (None: where targets >= 0)."""
    counted = targets >= 0 if mask is None else mask.unsqueeze(-1).expand_as(targets)  # (B, T, O)
    wrong = ((outputs > 0.5).to(targets.dtype) != targets) & counted
    return wrong.sum((1, 2))


@dataclass(kw_only=True)
class AlgorithmicPrepared(Prepared):
    config: AlgorithmicDataConfig
    tests: dict[int, AlgorithmicDataset]  # each tested length's sequences


def prepare(config: AlgorithmicDataConfig, preprocessing=None, path=None) -> AlgorithmicPrepared:
    if path is not None:
        raise DataError(
            f"an algorithmic task generates its sequences and reads no file, got {path}: evaluate without "
            "data (the test lengths are the bundle's data.eval_lengths)"
        )
    low, high, c = config.shortest, config.max_length, config
    validation = c.dataset(c.validation_size, low, high, stream=1) if c.validation_size else None
    return AlgorithmicPrepared(
        train=c.dataset(c.train_size, low, high, stream=0),
        validation=validation,
        test=None,
        tests={n: c.dataset(c.test_size, n, n, stream=1000 + n, repeats=c.eval_repeats) for n in c.lengths},
        preprocessing={"input_size": input_size(config.problem, config.bits)},
        collate=collate,
        part="generated test sequences",
        config=config,
    )  # fmt: skip


@torch.no_grad()
def errors(model, dataset: AlgorithmicDataset, batch_size: int = 50) -> dict[str, Tensor]:
    """Bits wrong per sequence (N,) of the model and the all-zeros baseline, and the bits counted."""
    device = next(model.parameters()).device
    found: dict[str, list[Tensor]] = {"model": [], BASELINE: [], "counted": []}
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        targets = batch.targets.to(device)
        probs = model.predict(batch.inputs.to(device), batch.lengths)  # (B, T, O)
        found["model"].append(bits_wrong(probs, targets).cpu())
        found[BASELINE].append(bits_wrong(torch.zeros_like(probs), targets).cpu())
        found["counted"].append((targets >= 0).sum((1, 2)).cpu())
    return {k: torch.cat(v).float() for k, v in found.items()}


def evaluate(model, prepared: AlgorithmicPrepared, config: AlgorithmicDataConfig) -> dict[str, Any]:
    by_length = {n: errors(model, data) for n, data in prepared.tests.items()}
    who = ("model", BASELINE)
    return {
        "problem": config.problem,
        "part": prepared.part,
        "bits": config.bits,
        "trained_lengths": [config.shortest, config.max_length],
        "sequences_per_length": config.test_size,
        "lengths": list(by_length),
        "output_bits": {str(n): float(e["counted"].mean()) for n, e in by_length.items()},
        "bits_wrong": {w: {str(n): float(e[w].mean()) for n, e in by_length.items()} for w in who},
        "perfect": {
            w: {str(n): float((e[w] == 0).float().mean()) for n, e in by_length.items()} for w in who
        },
    }


def metrics_table(m: dict[str, Any]) -> str:
    unit = "items" if m["problem"] == "associative_recall" else "length"
    low, high = m["trained_lengths"]
    lines = [
        f"{m['problem']}, {m['bits']} bits, trained on {unit} {low} .. {high}; {m['part']}, "
        f"{m['sequences_per_length']} per {'number of items' if unit == 'items' else unit}",
        "  bits wrong per sequence (and the share of sequences without any wrong bit)",
        f"  {unit:>8}{'output bits':>13}{'model':>17}{'all zeros':>17}",
    ]
    for n in map(str, m["lengths"]):
        cells = [f"{m['bits_wrong'][w][n]:>9.2f} ({m['perfect'][w][n]:>4.0%})" for w in ("model", BASELINE)]
        lines.append(f"  {n:>8}{m['output_bits'][n]:>13.1f}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


class AlgorithmicTask(Task[AlgorithmicDataConfig, AlgorithmicPrepared]):
    """Copy, repeat copy or associative recall, tested by bits wrong per sequence at each length."""

    name = "algorithmic"
    data_config = AlgorithmicDataConfig
    default_model = "bit_sequence"

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> AlgorithmicPrepared:
        return prepare(config, preprocessing, path)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        sizes = {"input_size": input_size(config.problem, config.bits)}
        return ModelKeys(fixed=sizes | {"output_size": output_size(config.problem, config.bits)})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared, prepared.config)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """bits_wrong.png: bits wrong by length, model beside baseline; memory.png for an NTM or a DNC."""
        from rnnkit.tasks.algorithmic_plots import plot_errors, plot_memory

        written = [plot_errors(metrics, out_dir / "bits_wrong.png")]
        cell = getattr(model.config, "cell", None)
        if cell in ("ntm", "dnc"):
            n = config.max_length
            example = config.dataset(1, n, n, stream=999)[0]
            title = f"{config.problem}, length {n}: the {cell.upper()}'s heads (memory rows against steps)"
            written.append(plot_memory(model, example, out_dir / "memory.png", title))
        return written

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.algorithmic_use import AlgorithmicPredictor

        return AlgorithmicPredictor(self, bundle)


register_task(AlgorithmicTask())
