"""The seq2seq task end to end: pair files -> training -> edit rates and BLEU beside the nearest
training source, the bundle's predictor, the CLI, and the readers and metrics under it."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

import rnnkit
from rnnkit.cli.main import main
from rnnkit.config import ConfigError
from rnnkit.data import PairDataset, pad_pairs, read_pairs
from rnnkit.errors import DataError, ShapeError
from rnnkit.metrics import nearest_neighbour_outputs, sequence_metrics, tagging_metrics
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import seq2seq
from rnnkit.tasks.seq2seq import PairDataConfig, cmudict_pairs, split_by_source

LETTERS = "abcdef"


def _pair(word: str) -> tuple[str, str]:
    """The toy task: a word's letters upper-cased, reversed, one token each ("abc" -> "C B A")."""
    return word, " ".join(reversed(word.upper()))


@pytest.fixture(scope="module")
def pairs_tsv(tmp_path_factory):
    rng = random.Random(0)
    words = list(dict.fromkeys("".join(rng.choices(LETTERS, k=rng.randint(2, 5))) for _ in range(900)))
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text("".join(f"{w}\t{t}\n" for w, t in map(_pair, words)))
    return path


def _config(tmp_path, data: dict, **model) -> str:
    config = {
        "task": "seq2seq",
        "out_dir": str(tmp_path / "run"),
        "data": {"test": 0.1, "validation": 0.05, "beam_width": 3, **data},
        "model": {"embedding_dim": 16, "hidden_size": 48, "bidirectional": True, **model},
        "train": {
            "epochs": 8,
            "batch_size": 32,
            "optimizer": {"lr": 0.01},
            "progress": False,
            "tensorboard": False,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_tsv):
    tmp_path = tmp_path_factory.mktemp("seq2seq")
    config = load_run_config(_config(tmp_path, {"path": str(pairs_tsv)}))
    metrics = train_run(config, log=lambda _: None)
    return tmp_path / "run", metrics


def test_model_learns_the_mapping_and_beats_the_nearest_training_source(trained):
    run, metrics = trained
    model, nearest = metrics["model"], metrics["nearest_source"]
    assert metrics["beam_width"] == 3 and "greedy" in metrics
    assert model["sequence_error_rate"] < 0.3 < nearest["sequence_error_rate"]
    assert model["token_error_rate"] < nearest["token_error_rate"]
    assert 0 <= model["char_error_rate"] <= 1 and 0 <= model["bleu"] <= 100 + 1e-9
    assert (run / "attention.png").stat().st_size > 0


def test_predictor_outputs_n_best_and_alignments(trained):
    run, _ = trained
    predictor = rnnkit.load(run / "bundle")
    assert {"predict", "align", "plot"} <= set(predictor.verbs)
    one = predictor.predict("fab")
    assert one["text"] == "fab" and one["output"] == "B A F" and one["score"] <= 0
    many = predictor.predict(["ab", "cde"], beam_width=4, n_best=3)
    assert [m["text"] for m in many] == ["ab", "cde"]
    scores = [o["score"] for o in many[1]["outputs"]]
    assert len(scores) == 3 and many[1]["output"] == many[1]["outputs"][0]["output"]
    assert len({o["output"] for o in many[1]["outputs"]}) == 3
    found = predictor.align("fab")
    assert found["source"] == ["f", "a", "b"] and found["output"] == ["B", "A", "F"]
    weights = torch.tensor(found["attention"])  # (3 outputs, 3 letters)
    assert weights.shape == (3, 3) and torch.allclose(weights.sum(1), torch.ones(3))
    assert weights.argmax(1).tolist() == [2, 1, 0]  # reversing: output t looks at letter 2 - t
    with pytest.raises(ConfigError, match="n_best"):
        predictor.predict("ab", beam_width=2, n_best=3)
    with pytest.warns(UserWarning, match="never had"):
        predictor.predict("abz")


def test_predictor_evaluates_a_file_of_pairs(trained, tmp_path):
    run, _ = trained
    path = tmp_path / "more.tsv"
    path.write_text("".join(f"{w}\t{t}\n" for w, t in map(_pair, ["abc", "fed", "cafe"])))
    report = rnnkit.load(run / "bundle").evaluate(path)
    assert report["examples"] == 3 and "nearest_source" not in report
    assert "model, beam 3" in str(report)


def test_cli_predict_prints_source_and_output(trained, capsys):
    run, _ = trained
    assert main(["predict", str(run / "bundle"), "--text", "fab", "--text", "ce"]) == 0
    assert capsys.readouterr().out.splitlines() == ["fab\tB A F", "ce\tE C"]
    assert main(["predict", str(run / "bundle"), "--text", "fab", "--n-best", "2", "--beam-width", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("fab\tB A F\t-")


def test_every_pair_of_a_source_lands_in_one_part():
    sources = [f"w{i % 40}" for i in range(200)]
    config = PairDataConfig(path="x.tsv", test=0.2, validation=0.1, split_seed=3)
    train, validation, test = split_by_source(sources, config, has_test=False)
    assert len(test) == 8 and len(validation) == 3 and len(train) == 29
    assert not (train & test or train & validation or validation & test)
    assert split_by_source(sources, config, False) == (train, validation, test)


def test_cmudict_becomes_word_tab_phoneme_lines_without_stress(tmp_path):
    path = cmudict_pairs(tmp_path)
    pairs = read_pairs(path)
    table = {}
    for word, phonemes in zip(pairs.sources, pairs.targets, strict=True):
        table.setdefault(word, []).append(phonemes)
    assert table["phoneme"] == ["F OW N IY M"]
    assert len(table["either"]) >= 2  # "either(2)" folded into the word
    assert "aalborg" in table and "#" not in table["aalborg"][0]  # comments dropped
    assert not any(c.isdigit() for t in pairs.targets[:5000] for c in t)
    assert len(table) > 120_000


# ---- readers -------------------------------------------------------------------------------------


def test_read_pairs_from_tsv_aligned_files_and_tables(tmp_path):
    (tmp_path / "p.tsv").write_text("cat\tK AE T\n\ndog\tD AO G\n")
    assert read_pairs(tmp_path / "p.tsv")[:2] == (["cat", "dog"], ["K AE T", "D AO G"])
    (tmp_path / "src.txt").write_text("le chat\nle chien\n")
    (tmp_path / "tgt.txt").write_text("the cat\r\nthe dog\n")
    assert read_pairs(tmp_path / "src.txt", tmp_path / "tgt.txt")[:2] == (
        ["le chat", "le chien"],
        ["the cat", "the dog"],
    )
    (tmp_path / "t.csv").write_text("word,phones\ncat,K AE T\n")
    assert read_pairs(tmp_path / "t.csv", source_column="word", target_column="phones")[:2] == (
        ["cat"],
        ["K AE T"],
    )
    (tmp_path / "t.jsonl").write_text('{"source": "a", "target": "b"}\n')
    assert read_pairs(tmp_path / "t.jsonl")[:2] == (["a"], ["b"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cat\tK AE T\ndog D AO G\n", "lines 2 are not source<TAB>target"),
        ("cat\tK\tAE\n", "lines 1 are not source<TAB>target"),
        ("cat\t \n", "lines 1 are not"),
        ("\n\n", "holds no pairs"),
    ],
)
def test_read_pairs_names_bad_lines(tmp_path, content, message):
    (tmp_path / "p.tsv").write_text(content)
    with pytest.raises(DataError, match=message):
        read_pairs(tmp_path / "p.tsv")


def test_aligned_files_must_match_line_for_line(tmp_path):
    (tmp_path / "a").write_text("one\ntwo\nthree\n")
    (tmp_path / "b").write_text("un\ndeux\n")
    with pytest.raises(DataError, match="a has 3 lines but b has 2"):
        read_pairs(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b").write_text("un\n\ntrois\n")
    with pytest.raises(DataError, match="lines 2 are blank on one side"):
        read_pairs(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DataError, match="columns are named only in"):
        read_pairs(tmp_path / "a", source_column="x")


def test_pairs_are_padded_with_pad_and_ignore():
    dataset = PairDataset([[5, 6, 7], [8]], [[9, 3], [10, 11, 3]])
    batch = pad_pairs([dataset[0], dataset[1]])
    assert batch.inputs.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.targets.tolist() == [[9, 3, -100], [10, 11, 3]]
    assert batch.lengths.tolist() == [3, 1]
    with pytest.raises(DataError, match=r"sources 1 .* have no tokens"):
        PairDataset([[5], []], [[3], [3]])
    with pytest.raises(ShapeError, match="2 tokens, 3 targets"):
        PairDataset([[5, 6]], [[1, 2, 3]], same_length=True)


# ---- metrics -------------------------------------------------------------------------------------


def test_sequence_metrics_take_the_closest_of_several_references():
    outputs = [["HH", "AH", "L", "OW"], ["IY", "DH", "ER"], ["K", "AE"]]
    references = [[["HH", "AH", "L", "OW"]], [["AY", "DH", "ER"], ["IY", "DH", "ER"]], [["K", "AE", "T"]]]
    metrics = sequence_metrics(outputs, references)
    assert metrics["sequence_error_rate"] == pytest.approx(1 / 3)
    assert metrics["token_error_rate"] == pytest.approx(1 / 10)  # one deletion over 4 + 3 + 3 tokens
    assert metrics["char_error_rate"] == pytest.approx(
        2 / 24
    )  # " T" missing from "K AE T"; 10 + 8 + 6 characters
    assert sequence_metrics(outputs[:2], references[:2])["bleu"] == pytest.approx(100)
    with pytest.raises(DataError, match="at least one reference"):
        sequence_metrics([["a"]], [[]])


def test_nearest_neighbour_takes_the_closest_training_source():
    assert nearest_neighbour_outputs(["cat", "dog", "house"], ["K", "D", "H"], ["cats", "hose", "do"]) == [
        "K",
        "H",
        "D",
    ]


def test_tagging_metrics_score_entities_strictly():
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "O", "O", "B-LOC"]]
    metrics = tagging_metrics(true, predicted, "BIO")
    assert metrics["accuracy"] == 0.75
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert tagging_metrics([["NN", "VB"]], [["NN", "NN"]], None) == {
        "accuracy": 0.5,
        "tokens": 2,
        "sentences": 1,
    }
    with pytest.raises(DataError, match="one predicted tag per true tag"):
        tagging_metrics([["NN", "VB"]], [["NN"]], None)


# ---- config errors -------------------------------------------------------------------------------


def test_bad_configs_fail_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.attention"):
        load_run_config(_config(tmp_path, {"path": "missing.tsv"}, attention="luong"))
    with pytest.raises(ConfigError, match="exactly one of data"):
        load_run_config(_config(tmp_path, {}))
    with pytest.raises(ConfigError, match="source_vocab_size is fixed by the data"):
        load_run_config(_config(tmp_path, {"path": "x.tsv"}, source_vocab_size=10))


def test_bleu_ignores_missing_references_and_texts_are_detokenized():
    outputs = [["a", "b"], ["x", "y", "z", "w"]]
    references = [[["a", "b", "c", "d", "e", "f"]], [["x", "y", "z", "w"], ["x", "y", "z", "w", "v"]]]
    assert sequence_metrics(outputs, references)["bleu"] < 60  # a short output pays the brevity penalty
    characters = sequence_metrics([list("abc")], [[list("abd")]], detokenize="".join)
    assert characters["char_error_rate"] == characters["token_error_rate"] == pytest.approx(1 / 3)


def test_sources_that_read_alike_share_a_part_and_a_share_is_at_least_one():
    config = PairDataConfig(path="x.tsv", test=0.1, validation=0.1, lower=True)
    train, validation, test = split_by_source(["Apple", "apple", "b", "c", "d"], config, has_test=False)
    assert len(test) == len(validation) == 1 and len(train) == 2
    assert "Apple" not in set().union(train, validation, test)  # keys are lower-cased: one "apple"


def test_a_test_file_is_tested_only_on_unseen_sources(tmp_path, pairs_tsv):
    seen = pairs_tsv.read_text().splitlines()[:3]
    (tmp_path / "test.tsv").write_text("\n".join([*seen, "zzzz\tZ Z Z Z"]) + "\n")
    config = PairDataConfig(path=str(pairs_tsv), test_path=str(tmp_path / "test.tsv"))
    with pytest.warns(UserWarning, match="3 pairs of .* have a source the training data has"):
        prepared = seq2seq.prepare(config)
    assert prepared.test_sources == ["zzzz"]
    (tmp_path / "test.tsv").write_text("\n".join(seen) + "\n")
    with (
        pytest.raises(DataError, match="test part holds no pairs: every source of"),
        pytest.warns(UserWarning),
    ):
        seq2seq.prepare(config)


def test_a_bundle_missing_its_codecs_is_refused_by_name(trained, tmp_path):
    run, _ = trained
    damaged = tmp_path / "bundle"
    shutil.copytree(run / "bundle", damaged)
    preprocessing = json.loads((damaged / "preprocessing.json").read_text())
    del preprocessing["target_codec"]
    (damaged / "preprocessing.json").write_text(json.dumps(preprocessing))
    with pytest.raises(DataError, match=r"preprocessing\.json lacks target_codec, which a seq2seq"):
        rnnkit.load(damaged)
