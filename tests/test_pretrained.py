"""A classifier started from a language model (data.encoder_from): the texts are encoded with the
language model's codec, its embedding and recurrent layers are copied in (the classifier's encoder
then reads a text as the language model's layers do), the keys it fixes are enforced, and a bundle
of another task or a mix with word vectors is refused."""

import json

import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.errors import ConfigError
from rnnkit.models import build_model
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks.pretrained import copy_encoder

WORDS = [
    "the",
    "a",
    "film",
    "plot",
    "actor",
    "scene",
    "long",
    "short",
    "good",
    "bad",
    "great",
    "awful",
    "fine",
    "dull",
]


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    lines = [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8)) for i in range(200)]
    (tmp / "corpus.txt").write_text("\n".join(lines) + "\n")
    config = {
        "task": "language_model",
        "out_dir": str(tmp / "run"),
        "data": {"path": str(tmp / "corpus.txt"), "level": "word", "seq_len": 10, "test": 0.1,
                 "validation": 0.1, "eval_rows": 2, "cache_dir": str(tmp / "cache")},
        "model": {"cell": "lstm", "embedding_dim": 8, "hidden_size": 8, "num_layers": 2, "tie_weights": True,
                  "weight_drop": 0.2},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False},
    }  # fmt: skip
    (tmp / "lm.yaml").write_text(json.dumps(config))
    train_run(load_run_config(tmp / "lm.yaml"), log=lambda _: None)
    return tmp / "run" / "bundle"


def reviews(tmp_path):
    said = {0: "awful dull,neg", 1: "great good,pos"}
    rows = [f"{WORDS[i % 8]} {WORDS[i // 8 % 8]} film {said[i % 2]}" for i in range(60)]
    (tmp_path / "reviews.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    return str(tmp_path / "reviews.csv")


def test_the_classifier_reads_as_the_language_model_does(language_model):
    lm = rnnkit.load(language_model).model
    classifier = build_model({"name": "classifier", "vocab_size": lm.config.vocab_size, "num_classes": 2,
                              "embedding_dim": 8, "hidden_size": 8, "num_layers": 2})  # fmt: skip
    assert copy_encoder(classifier, str(language_model)) == 1 + 2 * 4  # embedding, 2 layers x 4
    ids = torch.randint(0, lm.config.vocab_size, (3, 6))
    with torch.no_grad():
        x = lm.embedding(ids)
        for layer in lm.layers:  # eval mode: no dropout, DropConnect off
            x = layer(x).outputs
        mine = classifier.encoder(classifier.embedding(ids)).outputs
    torch.testing.assert_close(mine, x)


def test_a_run_encodes_with_the_language_models_codec_and_starts_from_it(tmp_path, language_model):
    said = []
    data = {"path": reviews(tmp_path), "encoder_from": str(language_model), "level": "char"}  # level ignored
    model = {"cell": "lstm", "pooling": "mean"}
    config = write_run_config(tmp_path, "classify", data, model, {"epochs": 1, "batch_size": 8})
    metrics = train_run(config, log=said.append)
    assert any("embedding and encoder: 9 tensors from the language model" in line for line in said)
    bundle = rnnkit.load(tmp_path / "run" / "bundle")
    assert bundle.preprocessing["codec"] == rnnkit.load(language_model).preprocessing["codec"]
    assert bundle.model.config.hidden_size == 8 and not bundle.model.config.bidirectional
    assert "accuracy" in metrics["model"]


@pytest.mark.parametrize(
    "data, model, message",
    [
        ({}, {"bidirectional": True}, r"model.bidirectional is fixed by the data section to False"),
        ({}, {"hidden_size": 16}, r"model.hidden_size is fixed by the data section to 8"),
        ({"vectors": "vectors.txt"}, {}, r"set data.encoder_from or data.vectors, not both"),
    ],
)
def test_what_does_not_fit_the_language_model_is_refused(tmp_path, language_model, data, model, message):
    data = {"path": reviews(tmp_path), "encoder_from": str(language_model), **data}
    with pytest.raises(ConfigError, match=message):
        train_run(write_run_config(tmp_path, "classify", data, model, {"epochs": 1}), log=lambda _: None)


def test_a_bundle_of_another_task_is_refused(tmp_path, language_model):
    data = {"path": reviews(tmp_path)}
    model = {"embedding_dim": 8, "hidden_size": 8}
    train_run(write_run_config(tmp_path, "classify", data, model, {"epochs": 1}), log=lambda _: None)
    data["encoder_from"] = str(tmp_path / "run" / "bundle")
    (tmp_path / "again").mkdir()
    with pytest.raises(ConfigError, match=r"is a 'classify' bundle; give a language model's"):
        train_run(
            write_run_config(tmp_path / "again", "classify", data, {}, {"epochs": 1}), log=lambda _: None
        )
