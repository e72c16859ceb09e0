"""Using a trained next-item model: the k most likely next items of a session.

    recommender = rnnkit.load("runs/next_item/bundle")
    recommender.predict("item3 item4", k=5)   # one session: {'session', 'next': [{'item', 'probability'}]}
    recommender.predict(["item3 item4", ["item9"]])   # several: each a string of items or a list of them
    session = recommender.session()          # a session followed live: each item read once
    session.feed("item3", top=5)             # {'items_read': 1, 'next': [{'item', 'probability'}, ...]}
    session.feed("item4")                    # as predict("item3 item4") while the session is shorter
                                             # than the model's max_length (predict keeps the last ones)

Items the model never saw are read as the unknown item, with a warning naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rnnkit.data.vocab import Vocab
from rnnkit.errors import ConfigError, DataError, warn_user
from rnnkit.tasks import Predictor


class NextItemPredictor(Predictor):
    """A trained next-item model: ``predict`` ranks the next item of sessions."""

    verbs = (*Predictor.verbs, "predict", "session")

    def session(self, condition: Any = None) -> NextItemSession:
        """A user's session followed item by item, the state carried: the likeliest next items after
        each (nothing is read twice)."""
        if condition is not None:
            raise ConfigError("a next-item model takes no condition")
        return NextItemSession(self)

    def predict(self, inputs: str | Sequence[str] | Sequence[Sequence[str]], k: int = 10, **options) -> Any:
        """The top ``k`` next items of one session (a string of space-separated items) as a dict, or
        of each session of a list (each a string of items, or a list of them), as a list."""
        if options:
            raise ConfigError(f"next-item predict takes k only; got {sorted(options)}")
        if isinstance(inputs, str):
            return self._next([inputs.split()], k)[0]
        return self._next([x.split() if isinstance(x, str) else list(x) for x in inputs], k)

    def format(self, result: dict[str, Any]) -> str:
        return "  ".join(f"{r['item']} ({r['probability']:.3f})" for r in result["next"])

    @torch.no_grad()
    def _next(self, sessions: list[list[str]], k: int) -> list[dict[str, Any]]:
        vocab = Vocab.from_state(self.preprocessing["vocab"])
        empty = [i for i, s in enumerate(sessions) if not s]
        if empty:
            raise DataError(f"sessions {empty[:5]} have no items: a next item needs at least one before it")
        unknown = sorted({item for s in sessions for item in s if item not in vocab})
        if unknown:
            warn_user(f"{len(unknown)} item(s) the model never saw are read as unknown: {unknown[:5]}")
        device = next(self.model.parameters()).device
        results = []
        for s in sessions:
            ids = torch.tensor([vocab.encode(s[-self.preprocessing["max_length"] :])], device=device)
            probs, _ = self.model.predict(ids)
            results.append({"session": s, "next": _ranked(probs[0, -1], vocab, k)})
        return results


def _ranked(probs: torch.Tensor, vocab: Vocab, k: int) -> list[dict[str, Any]]:
    """The ``k`` likeliest items of a next-item distribution (V,), never a special token."""
    last = probs.clone()
    last[: len(Vocab.SPECIALS)] = 0.0  # never recommend padding, unknown, begin or end
    top = torch.topk(last, min(k, len(vocab) - len(Vocab.SPECIALS)))
    items = vocab.decode(top.indices.tolist())
    return [{"item": i, "probability": float(p)} for i, p in zip(items, top.values, strict=True)]


class NextItemSession:
    """Items fed as they happen (space-separated, one or more at a time), each read once with the
    state carried; after each feed, the likeliest next items."""

    def __init__(self, predictor: NextItemPredictor) -> None:
        self.model = predictor.model
        self.vocab = Vocab.from_state(predictor.preprocessing["vocab"])
        self.state: Any = None
        self.items_read = 0

    @torch.no_grad()
    def feed(self, items: str, top: int = 10) -> dict[str, Any]:
        names = items.split()
        if not names:
            raise DataError("feed at least one item (space-separated)")
        unknown = sorted({item for item in names if item not in self.vocab})
        if unknown:
            warn_user(f"{len(unknown)} item(s) the model never saw are read as unknown: {unknown[:5]}")
        ids = torch.tensor([self.vocab.encode(names)], device=next(self.model.parameters()).device)
        probs, self.state = self.model.predict(ids, self.state)
        self.items_read += len(names)
        return {"items_read": self.items_read, "next": _ranked(probs[0, -1], self.vocab, top)}
