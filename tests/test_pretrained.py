"""A classifier started from a language model (data.encoder_from): the texts are encoded with the
language model's codec, its embedding and recurrent layers are copied in (the classifier's encoder
then reads a text as the language model's layers do), the keys it fixes are enforced, and a bundle
of another task or a mix with word vectors is refused."""

import json

import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.bundle import read_bundle_config
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


def test_a_classifier_of_another_vocabulary_is_refused(language_model):
    lm = rnnkit.load(language_model).model
    classifier = build_model({"name": "classifier", "vocab_size": lm.config.vocab_size + 3, "num_classes": 2,
                              "embedding_dim": 8, "hidden_size": 8, "num_layers": 2})  # fmt: skip
    with pytest.raises(ConfigError, match=r"embedding.weight .* has no place in this classifier"):
        copy_encoder(classifier, str(language_model))


# ULMFiT's second stage: a language model trained on from a bundle (data.start_from), and the
# classifier's data.adapt, which makes that run on the task's own texts before fine-tuning.


def lm_data(tmp_path, language_model, text="the good film\nthe bad plot\n" * 40):
    (tmp_path / "more.txt").write_text(text)
    return {"path": str(tmp_path / "more.txt"), "start_from": str(language_model), "seq_len": 5,
            "test": 0.2, "validation": 0.1, "eval_rows": 2, "cache_dir": str(tmp_path / "cache"),
            "level": "char"}  # fmt: skip


def test_a_language_model_trains_on_from_a_bundle_with_its_codec_and_every_weight(tmp_path, language_model):
    said, source = [], rnnkit.load(language_model)
    train = {"epochs": 1, "batch_size": 4, "max_steps": 1}
    data = lm_data(tmp_path, language_model)
    config = write_run_config(tmp_path, "language_model", data, {"hidden_dropout": 0.3}, train)
    from rnnkit.run import resolve_model
    from rnnkit.tasks import get_task

    task = get_task("language_model")
    prepared = task.prepare(config.data, batch_size=4)
    assert prepared.preprocessing["codec"] == source.preprocessing["codec"]  # level: char ignored
    model = build_model(resolve_model(config, prepared))
    task.initialize(model, prepared, config.data, said.append)
    assert said == [f"all 11 tensors from the language model {language_model}"]
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert model.config.hidden_dropout == 0.3 and model.config.weight_drop == 0.2  # dropouts free, kept
    train_run(config, log=lambda _: None)
    trained = rnnkit.load(tmp_path / "run" / "bundle")
    assert trained.preprocessing["codec"] == source.preprocessing["codec"]
    assert not torch.equal(trained.model.embedding.weight, source.model.embedding.weight)


def test_a_language_model_of_other_sizes_cannot_start_from_the_bundle(tmp_path, language_model):
    with pytest.raises(ConfigError, match=r"model.hidden_size is fixed by the data section to 8"):
        write_run_config(tmp_path, "language_model", lm_data(tmp_path, language_model), {"hidden_size": 16})


def test_adapting_trains_the_language_model_on_the_training_texts_then_the_classifier_from_it(
    tmp_path, language_model
):
    (tmp_path / "unlabelled.txt").write_text("a long dull scene\n\na short fine plot\n")
    data = {"path": reviews(tmp_path), "encoder_from": str(language_model), "test": 0.25,
            "unlabelled_path": "unlabelled.txt",
            "adapt": {"epochs": 1, "batch_size": 2, "seq_len": 5}}  # fmt: skip
    train = {"epochs": 1, "batch_size": 8}
    config = write_run_config(tmp_path, "classify", data, {"pooling": "concat"}, train)
    said = []
    metrics = train_run(config, log=said.append)
    stage = tmp_path / "run" / "language_model"
    from rnnkit.tasks import get_task

    prepared = get_task("classify").prepare(config.data)
    texts = (stage / "texts.txt").read_text().splitlines()
    assert sorted(texts) == sorted([*prepared.texts["train"].texts, "a long dull scene", "a short fine plot"])
    said_first = f"adapting the language model {language_model} to {len(texts)} of the task's texts ({stage})"
    assert said_first in said
    assert not set(texts) & set(prepared.texts["test"].texts)  # no test text reaches the language model
    adapted = rnnkit.load(stage / "bundle")
    assert adapted.preprocessing["codec"] == rnnkit.load(language_model).preprocessing["codec"]
    saved = read_bundle_config(tmp_path / "run" / "bundle")["data"]
    assert saved["encoder_from"] == str(stage / "bundle") and saved["adapt"]["epochs"] == 0
    assert saved["unlabelled_path"] is None
    assert "accuracy" in metrics["model"]


def test_resuming_reuses_the_adapted_language_model(tmp_path, language_model):
    data = {"path": reviews(tmp_path), "encoder_from": str(language_model),
            "adapt": {"epochs": 1, "batch_size": 2, "seq_len": 5}}  # fmt: skip
    config = write_run_config(tmp_path, "classify", data, {}, {"epochs": 1, "batch_size": 8})
    train_run(config, log=lambda _: None)
    stamp = (tmp_path / "run" / "language_model" / "bundle" / "model.safetensors").stat().st_mtime_ns
    said = []
    train_run(config, resume=True, log=said.append)
    assert any("done before" in line for line in said)
    assert (tmp_path / "run" / "language_model" / "bundle" / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "data, message",
    [
        ({"adapt": {"epochs": 1}}, r"data.adapt trains the language model of data.encoder_from: set it"),
        ({"unlabelled_path": "u.txt"}, r"data.unlabelled_path is read only to adapt the language model"),
    ],
)
def test_adapt_options_without_their_counterpart_are_refused(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        write_run_config(tmp_path, "classify", {"path": reviews(tmp_path), **data}, {}, {"epochs": 1})


def test_unlabelled_texts_are_read_from_text_tables_and_folders(tmp_path):
    from rnnkit.errors import DataError
    from rnnkit.tasks.classify import read_unlabelled

    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.jsonl").write_text('{"review": "three"}\n{"review": "four"}\n')
    (tmp_path / "unsup" / "x").mkdir(parents=True)
    (tmp_path / "unsup" / "1.txt").write_text("five\nlines\n")
    (tmp_path / "unsup" / "x" / "2.txt").write_text("six")
    assert read_unlabelled(str(tmp_path / "a.txt")) == ["one", "two"]
    assert read_unlabelled(str(tmp_path / "b.jsonl"), "review") == ["three", "four"]
    assert read_unlabelled(str(tmp_path / "unsup")) == ["five\nlines", "six"]
    with pytest.raises(DataError, match=r"data.unlabelled_path: .*nothing.txt does not exist"):
        read_unlabelled(str(tmp_path / "nothing.txt"))


def test_the_ulmfit_sentiment_config_adapts_the_pretrained_bundle_then_fine_tunes(tmp_path, language_model):
    from pathlib import Path

    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "sentiment_ulmfit.yaml"
    config.write_text((Path(__file__).parents[1] / "configs" / "sentiment_ulmfit.yaml").read_text())
    (tmp_path / "runs" / "lm_pretrain").mkdir(parents=True)
    (tmp_path / "runs" / "lm_pretrain" / "bundle").symlink_to(language_model)
    ulmfit = load_run_config(config)
    assert ulmfit.data.encoder_from == str((tmp_path / "runs" / "lm_pretrain" / "bundle").resolve())
    assert ulmfit.data.adapt.epochs == 8 and ulmfit.model["pooling"] == "concat"
    assert ulmfit.train.gradual_unfreezing and ulmfit.train.optimizer.discriminative == 2.6
    assert ulmfit.train.schedule.name == "slanted_triangular"


def test_a_classifiers_run_resumes_from_its_saved_config(tmp_path):
    config = write_run_config(tmp_path, "classify", {"path": reviews(tmp_path)}, {"hidden_size": 8},
                              {"epochs": 1, "batch_size": 8})  # fmt: skip
    train_run(config, log=lambda _: None)
    saved = load_run_config(
        tmp_path / "run" / "config.yaml", ["train.epochs=2"]
    )  # as `rnnkit resume` reads it
    said = []
    train_run(saved, resume=True, log=said.append)
    assert any("trained 12 steps" in line for line in said), said  # 6 a pass, the first one kept


def test_an_interrupted_adaptation_is_resumed_from_the_run_directory(tmp_path, language_model, monkeypatch):
    from rnnkit.run import RunInterrupted, Trainer

    data = {"path": reviews(tmp_path), "encoder_from": str(language_model),
            "adapt": {"epochs": 1, "batch_size": 2, "seq_len": 5}}  # fmt: skip
    config = write_run_config(tmp_path, "classify", data, {}, {"epochs": 1, "batch_size": 8})
    fit = Trainer.fit

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", ctrl_c)
    with pytest.raises(
        RunInterrupted, match=r"interrupted while adapting the language model .*`rnnkit resume "
    ):
        train_run(config, log=lambda _: None)
    monkeypatch.setattr(Trainer, "fit", fit)
    saved = load_run_config(tmp_path / "run" / "config.yaml")
    assert saved.data.adapt.epochs == 1  # the stage is still to do
    said = []
    train_run(saved, resume=True, log=said.append)
    assert any(line.startswith("adapting the language model") for line in said)
    assert read_bundle_config(tmp_path / "run" / "bundle")["data"]["adapt"]["epochs"] == 0
