"""Predict a user's next item from the items of their session so far (session-based recommendation).

GRU4Rec's shape (Hidasi et al. 2016): a recurrent language model over item ids, trained with a full
softmax on every position of every training session. The data is an interaction log, one row per
event with a session column, an item column and an optional time column to order them (``.csv``,
``.tsv``, ``.parquet``, ``.jsonl``), or the seeded generator ``synthetic: sessions`` (module
:func:`sessions`). Sessions, not events, are split into training, validation and test parts
(seeded); items seen fewer than ``min_count`` times in training become the unknown item, which the
model never gets credit for predicting. Each test position asks for the next item: the table gives
recall@k and MRR@k beside two baselines fitted on the training sessions, the most popular items and
the most frequent successors of the current item (a first-order Markov chain, falling back to
popularity).

    task: next_item
    data: {path: clicks.csv, session_column: session, item_column: item, time_column: time}
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset

from rnnkit.config import Config
from rnnkit.data.batch import Batch
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError
from rnnkit.metrics import ranking_metrics
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task


class NextItemDataConfig(Config):
    """The interaction log (or the generator) and how its sessions are split (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    path: str | None = Field(None, description="an interaction log, one row per event")
    synthetic: Literal["sessions"] | None = Field(None, description="the seeded session generator instead")
    synthetic_options: dict[str, Any] = Field(default_factory=dict, description="sessions, items, seed")
    session_column: str = "session"
    item_column: str = "item"
    time_column: str | None = Field(None, description="orders the events of a session (file order if none)")
    test: float = Field(0.2, gt=0, lt=1, description="share of sessions held out for testing")
    validation: float = Field(0.1, ge=0, lt=1, description="share of the other sessions for early stopping")
    split_seed: int = 0
    min_count: int = Field(1, ge=1, description="items seen less often in training become unknown")
    max_length: int = Field(50, ge=2, description="a longer session keeps its last max_length items")
    k: list[int] = Field(default_factory=lambda: [5, 20], description="cut-offs of recall@k and MRR@k")

    @model_validator(mode="after")
    def _one_source(self) -> NextItemDataConfig:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give path (an interaction log) or synthetic: sessions, one of them")
        return self


def sessions(sessions: int = 2000, items: int = 300, clusters: int = 10, seed: int = 0) -> list[list[str]]:
    """Seeded sessions of varying length (2 to 20 items, geometric around 6): each session browses one
    of ``clusters`` groups of items (groups chosen with Zipf-like popularity), moving to the group's
    next item with probability 0.6 and to a random item of the group otherwise."""
    rng = np.random.default_rng(seed)
    size = items // clusters
    weights = 1.0 / np.arange(1, clusters + 1)
    out = []
    for _ in range(sessions):
        group = rng.choice(clusters, p=weights / weights.sum())
        length = int(np.clip(rng.geometric(1 / 5) + 1, 2, 20))
        position = int(rng.integers(size))
        visited = []
        for _ in range(length):
            visited.append(f"item{group * size + position}")
            position = (position + 1) % size if rng.random() < 0.6 else int(rng.integers(size))
        out.append(visited)
    return out


def read_sessions(config: NextItemDataConfig, path: str | Path | None = None) -> list[list[str]]:
    """Each session's items in order, sessions in order of first appearance."""
    if path is None and config.synthetic is not None:
        return sessions(**config.synthetic_options)
    from rnnkit.data.tables import read_table

    frame = read_table(path or config.path)
    columns = [
        config.session_column,
        config.item_column,
        *([config.time_column] if config.time_column else []),
    ]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"no column {missing} in the log; its columns are {list(frame.columns)}")
    if frame[config.item_column].isna().any():
        rows = frame.index[frame[config.item_column].isna()][:5].tolist()
        raise DataError(f"the log has events without an item at rows {rows}")
    if config.time_column:
        frame = frame.sort_values([config.time_column], kind="stable")
    grouped = frame.groupby(config.session_column, sort=False)[config.item_column]
    return [[str(item) for item in items] for _, items in grouped]


class SessionDataset(Dataset):
    """Sessions as item ids: item i is (ids[:-1], ids[1:]), the next item after each position."""

    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = [torch.tensor(s, dtype=torch.long) for s in ids]
        self.lengths = np.array([len(s) - 1 for s in ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[index][:-1], self.ids[index][1:]


def pad_sessions(examples) -> Batch:
    inputs, targets = zip(*examples, strict=True)
    lengths = torch.tensor([len(x) for x in inputs])
    pad = torch.nn.utils.rnn.pad_sequence
    return Batch(pad(list(inputs), batch_first=True), pad(list(targets), batch_first=True), lengths)


@dataclass(kw_only=True)
class NextItemPrepared(Prepared):
    vocab: Vocab
    sessions: dict[str, list[list[int]]]  # "train" and "test" as ids, for the baselines
    ranks: dict[str, np.ndarray] | None = field(default=None, repr=False)  # evaluate's, for the plot


def prepare(
    config: NextItemDataConfig, preprocessing=None, path=None, batch_size: int = 32
) -> NextItemPrepared:
    everything = [s[-config.max_length :] for s in read_sessions(config, path)]
    if path is not None:
        parts = {"train": [], "validation": [], "test": everything}
    else:
        order = np.random.default_rng(config.split_seed).permutation(len(everything))
        n_test = round(len(order) * config.test)
        n_val = round((len(order) - n_test) * config.validation)
        picked = {
            "test": order[:n_test],
            "validation": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        parts = {name: [everything[i] for i in rows] for name, rows in picked.items()}
    if preprocessing is None:
        vocab = Vocab.build((item for s in parts["train"] for item in s), min_freq=config.min_count)
        preprocessing = {"vocab": vocab.state_dict(), "k": config.k, "max_length": config.max_length}
    vocab = Vocab.from_state(preprocessing["vocab"])
    ids = {name: [vocab.encode(s) for s in part if len(s) >= 2] for name, part in parts.items()}
    if not ids["test"]:
        raise DataError("no session of two or more items to test: every prediction needs a next item")
    if path is None and not ids["train"]:
        raise DataError("no training session of two or more items")
    datasets = {name: SessionDataset(part) if part else None for name, part in ids.items()}
    return NextItemPrepared(
        train=datasets["train"], validation=datasets["validation"], test=datasets["test"],
        preprocessing=preprocessing, collate=pad_sessions, vocab=vocab,
        sessions={"train": ids["train"], "test": ids["test"]},
        part=f"all of {path}" if path is not None else "test part",
    )  # fmt: skip


@torch.no_grad()
def model_ranks(model: torch.nn.Module, dataset: SessionDataset, batch_size: int = 128) -> np.ndarray:
    """The 0-based rank of each true next item among all items (the specials excluded), every position."""
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=pad_sessions):
        probs, _ = model.predict(batch.inputs.to(device), lengths=batch.lengths)  # (B, T, V)
        probs[..., : len(Vocab.SPECIALS)] = -1.0  # never recommend padding, unknown, begin or end
        truth = probs.gather(-1, batch.targets.to(device).unsqueeze(-1))  # (B, T, 1)
        ranks = (probs > truth).sum(-1)  # (B, T)
        unknown = batch.targets.to(device) < len(Vocab.SPECIALS)
        ranks[unknown] = -1  # the unknown item cannot be recommended: a miss
        for row, n in zip(ranks.cpu(), batch.lengths.tolist(), strict=True):
            out.append(row[:n].numpy())
    return np.concatenate(out)


def baseline_ranks(train: list[list[int]], test: list[list[int]], vocab_size: int) -> dict[str, np.ndarray]:
    """Ranks under the most-popular and the Markov (most frequent successor) baselines."""
    specials = len(Vocab.SPECIALS)
    popularity = np.zeros(vocab_size)
    for s in train:
        np.add.at(popularity, s, 1)
    popularity[:specials] = -1
    popular_rank = np.empty(vocab_size, dtype=np.int64)
    popular_rank[np.argsort(-popularity, kind="stable")] = np.arange(vocab_size)
    successors: dict[int, Counter] = {}
    for s in train:
        for a, b in itertools.pairwise(s):
            successors.setdefault(a, Counter())[b] += 1
    ranks = {"most_popular": [], "markov": []}
    scores: dict[int, np.ndarray] = {}  # per current item: successors by count, the rest by popularity
    for s in test:
        for current, following in itertools.pairwise(s):
            known = following >= specials
            ranks["most_popular"].append(popular_rank[following] if known else -1)
            if not known:
                ranks["markov"].append(-1)
                continue
            if current not in scores:
                counts = successors.get(current, Counter())
                after = np.zeros(vocab_size)
                after[list(counts)] = list(counts.values())
                scores[current] = popularity + (popularity.max() + 1) * after
            score = scores[current]
            ranks["markov"].append(int((score > score[following]).sum()))
    return {k: np.asarray(v) for k, v in ranks.items()}


def all_ranks(model: torch.nn.Module, prepared: NextItemPrepared) -> dict[str, np.ndarray]:
    """The ranks of every test prediction by the model and, given training sessions, the baselines."""
    ranks = {"model": model_ranks(model, prepared.test)}
    if prepared.sessions["train"]:
        ranks.update(
            baseline_ranks(prepared.sessions["train"], prepared.sessions["test"], len(prepared.vocab))
        )
    return ranks


def evaluate(model: torch.nn.Module, prepared: NextItemPrepared) -> dict[str, Any]:
    ks = prepared.preprocessing["k"]
    prepared.ranks = all_ranks(model, prepared)
    return {
        "part": prepared.part,
        "sessions": len(prepared.test),
        "predictions": len(prepared.ranks["model"]),
        "items": len(prepared.vocab) - len(Vocab.SPECIALS),
        "k": ks,
        **{name: ranking_metrics(r, ks) for name, r in prepared.ranks.items()},
    }


def metrics_table(results: dict[str, Any]) -> str:
    names = {"model": "model", "most_popular": "most popular", "markov": "Markov (most frequent next)"}
    columns = [f"{m}@{k}" for k in results["k"] for m in ("recall", "mrr")]
    lines = [
        f"{results['part']}: {results['sessions']} sessions, {results['predictions']} next-item predictions "
        f"over {results['items']} items",
        f"  {'':<30}" + "".join(f"{c:>11}" for c in columns),
    ]
    for key, label in names.items():
        if key in results:
            lines.append(f"  {label:<30}" + "".join(f"{results[key][c]:>11.4f}" for c in columns))
    return "\n".join(lines)


class NextItemTask(Task[NextItemDataConfig, NextItemPrepared]):
    """Rank every item as the next one of a session."""

    name = "next_item"
    data_config = NextItemDataConfig
    default_model = "language_model"
    fitted_keys: ClassVar = {"vocab_size": "the items seen in the training sessions"}
    preprocessing_keys = ("vocab", "k", "max_length")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> NextItemPrepared:
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        return ModelKeys() if prepared is None else ModelKeys({"vocab_size": len(prepared.vocab)})

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """recall_at_k.png: recall@k for k = 1 .. 2 x the largest k, the model beside the baselines."""
        from rnnkit import plots

        ks = np.arange(1, 2 * max(prepared.preprocessing["k"]) + 1)
        ranks = prepared.ranks or all_ranks(model, prepared)
        names = {"model": "model", "most_popular": "most popular", "markov": "Markov (most frequent next)"}
        curves = {names[who]: [float(((r >= 0) & (r < k)).mean()) for k in ks] for who, r in ranks.items()}
        path = out_dir / "recall_at_k.png"
        return [plots.plot_lines(curves, ks, path, "k", "recall@k", "Next item among the top k")]

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.next_item_use import NextItemPredictor

        return NextItemPredictor(self, bundle)


register_task(NextItemTask())
