"""Next-item prediction: recall@k and MRR@k against hand computation, the baselines' ranks on a tiny
log ranked by hand, the task end to end on a log file, and the trained bundle's top-k."""

import numpy as np
import pandas as pd
import pytest
from helpers import write_run_config

import rnnkit
from rnnkit.data.vocab import Vocab
from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import ranking_metrics
from rnnkit.run import train_run
from rnnkit.tasks import next_item


def test_recall_and_mrr_at_k_match_the_hand_count():
    ranks = np.array([0, 2, 5, -1])  # first place, third, sixth, an unknown item
    got = ranking_metrics(ranks, [1, 3])
    assert got == pytest.approx(
        {"recall@1": 1 / 4, "mrr@1": 1 / 4, "recall@3": 2 / 4, "mrr@3": (1 + 1 / 3) / 4}
    )
    with pytest.raises(DataError, match="one rank per prediction"):
        ranking_metrics(np.array([]), [5])


def test_the_baselines_rank_as_counted_by_hand():
    S = len(Vocab.SPECIALS)  # ids 0-3 are the specials; items are 4, 5, 6
    a, b, c = S, S + 1, S + 2
    train = [[a, b], [a, b], [a, c], [c, c, c]]  # popularity: c 4, a 3, b 2; after a: b twice, c once
    test = [[a, c], [b, a], [a, 1]]  # 1: an item unseen in training
    got = next_item.baseline_ranks(train, test, S + 3)
    # most popular ranks c, a, b: c is 0th, a 1st; the unknown item is a miss (-1)
    assert got["most_popular"].tolist() == [0, 1, -1]
    # after a: b (twice) then c (once) then by popularity; after b: nothing seen, so popularity
    assert got["markov"].tolist() == [1, 1, -1]


def write_log(tmp_path, sessions: int = 300):
    rows = []
    for session, items in enumerate(next_item.sessions(sessions=sessions, items=40, clusters=4, seed=1)):
        rows += [{"session": f"s{session}", "item": item, "time": t} for t, item in enumerate(items)]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # shuffled: the time column orders it
    frame.to_csv(tmp_path / "log.csv", index=False)


def run(tmp_path, **data):
    write_log(tmp_path)
    data = {"path": "log.csv", "time_column": "time", "k": [1, 5], **data}
    model = {"cell": "gru", "embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "tie_weights": False}
    return write_run_config(
        tmp_path, "next_item", data, model, {"epochs": 6, "batch_size": 32, "optimizer": {"lr": 0.01}}
    )


def test_a_log_trains_and_the_model_is_scored_beside_the_baselines(tmp_path):
    said = []
    metrics = train_run(run(tmp_path), log=said.append)
    for row in ("model", "most popular", "Markov (most frequent next)", "recall@5"):
        assert row in "\n".join(said)
    assert metrics["model"]["recall@5"] > 2 * metrics["most_popular"]["recall@5"]
    assert (tmp_path / "run" / "recall_at_k.png").is_file()

    recommender = rnnkit.load(tmp_path / "run" / "bundle")
    top = recommender.predict("item0 item1", k=3)
    assert len(top["next"]) == 3 and top["next"][0]["probability"] >= top["next"][1]["probability"]
    assert all(not r["item"].startswith("<") for r in top["next"])  # no special token recommended
    assert recommender.predict([["item0", "item1"], "item5"], k=3)[0] == top
    session = recommender.session()
    session.feed("item0")
    followed = session.feed("item1", top=3)
    assert followed["items_read"] == 2 and [r["item"] for r in followed["next"]] == [
        r["item"] for r in top["next"]
    ]
    for a, b in zip(followed["next"], top["next"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    with pytest.warns(UserWarning, match="never saw are read as unknown"):
        recommender.predict("item0 nothing-like-it", k=2)


def test_a_log_without_its_columns_or_sessions_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"no column \['user'\] in the log"):
        next_item.prepare(run(tmp_path, session_column="user").data)
    with pytest.raises(ConfigError, match=r"give path .* or synthetic: sessions, one of them"):
        run(tmp_path, synthetic="sessions")
