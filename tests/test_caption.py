"""The caption task: the digits' template, the file readers, the 1-NN baseline, the captioner's
checks, a run end to end on generated examples (and briefly on the digits), and ``caption``."""

import json

import numpy as np
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.errors import ConfigError, DataError, DTypeError, ShapeError
from rnnkit.models import build_model
from rnnkit.run import train_run
from rnnkit.tasks import caption
from rnnkit.tasks.caption import (
    CaptionDataConfig,
    describe_digits,
    nearest_texts,
    rates,
    read_examples,
    slant,
)

WORDS = ["red ball", "blue cube", "green cone"]


def examples(n: int = 96, seed: int = 0):
    """Features (n, 6): class k's block of two features high, the rest noise; images (n, 3, 2)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = rng.normal(0, 0.3, (n, 6))
    for i, k in enumerate(labels):
        features[i, 2 * k : 2 * k + 2] += 3.0
    return features, [WORDS[k] for k in labels], labels


def write_npz(tmp_path, name="captions.npz", **extra):
    features, texts, labels = examples()
    arrays = {"features": features, "texts": np.array(texts), "labels": labels.astype(str), **extra}
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


# ---------------------------------------------------------------- the digits' template


def test_slant_is_the_ink_moving_right_per_pixel_up():
    leaning = np.zeros((1, 3, 3))
    leaning[0, [0, 1, 2], [2, 1, 0]] = 1.0  # top right to bottom left: one pixel right per pixel up
    upright = np.zeros((1, 3, 3))
    upright[0, :, 1] = 1.0
    assert slant(leaning)[0] == pytest.approx(1.0) and slant(upright)[0] == 0.0
    assert slant(leaning[:, :, ::-1])[0] == pytest.approx(-1.0) and slant(np.zeros((1, 3, 3)))[0] == 0.0


def test_the_template_names_ink_digit_and_slant():
    bar = np.zeros((3, 3))
    bar[:, 1] = 1.0
    diagonal = np.zeros((3, 3))
    diagonal[[0, 1, 2], [2, 1, 0]] = 1.0
    images = np.stack([bar * 2, diagonal * 6, diagonal[:, ::-1] * 12])  # ink 6, 18, 36
    texts = describe_digits(images, np.array([1, 7, 0]), cuts=[10.0, 20.0], slant_threshold=0.1)
    assert texts == ["a thin one upright", "a medium seven leaning right", "a thick zero leaning left"]


def test_the_digits_are_described_with_the_training_parts_thirds_and_the_cuts_are_kept():
    config = CaptionDataConfig(dataset="digits", test=0.2, validation=0.1)
    prepared = caption.prepare(config)
    texts = prepared.texts["train"]
    assert len(texts) + len(prepared.texts["test"]) + len(prepared.validation) == 1797
    assert all(caption.TEMPLATE.match(t) for t in texts)
    thirds = [sum(f" {word} " in t for t in texts) / len(texts) for word in caption.INK_WORDS]
    assert all(0.3 < share < 0.37 for share in thirds)
    template = prepared.preprocessing["template"]
    assert template["slant_threshold"] == 0.1 and len(template["ink_cuts"]) == 2
    again = caption.prepare(config, json.loads(json.dumps(prepared.preprocessing)))
    assert again.texts["test"] == prepared.texts["test"]  # the bundle's cuts describe the same texts
    assert prepared.images.shape == (len(prepared.texts["test"]), 8, 8) and prepared.template


# ---------------------------------------------------------------- readers


def test_an_npz_and_tables_are_read_alike(tmp_path):
    features, texts, labels = examples(6)
    npz = read_examples(write_npz(tmp_path), CaptionDataConfig(path="x"))
    assert npz.features.shape == (96, 6) and npz.texts[:3] == WORDS and npz.labels[:3] == ["0", "1", "2"]
    rows = [
        {"a": f[0], "b": f[1], "caption": t, "kind": int(k)}
        for f, t, k in zip(features, texts, labels, strict=True)
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    lines = ["a,b,caption,kind"] + [f"{r['a']},{r['b']},{r['caption']},{r['kind']}" for r in rows]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    config = CaptionDataConfig(path="x", text_column="caption", label_column="kind")
    for name in ("t.jsonl", "t.csv"):
        table = read_examples(tmp_path / name, config)
        np.testing.assert_allclose(table.features, features[:, :2])
        assert table.texts == texts and table.labels == [str(k) for k in labels]
    features_only = read_examples(
        tmp_path / "t.csv", config.model_copy(update={"label_column": None}), texts=False
    )
    assert features_only.texts is None and features_only.features.shape == (6, 3)  # kind is a feature then


def test_an_npz_of_images_gives_their_pixels_as_features(tmp_path):
    images = np.arange(24, dtype=float).reshape(2, 3, 4)
    np.savez(tmp_path / "i.npz", images=images, texts=np.array(["a", "b"]))
    read = read_examples(tmp_path / "i.npz", CaptionDataConfig(path="x"))
    assert read.features.shape == (2, 12) and np.array_equal(read.features[1], images[1].ravel())


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"features": np.zeros((3, 2))}, r"needs the arrays \['features \(or images\)', 'texts'\]"),
        (
            {"features": np.zeros((3, 2)), "texts": np.array(["a", "b"])},
            r"texts must have one entry per example \(3\)",
        ),
        ({"features": np.full((2, 2), np.nan), "texts": np.array(["a", "b"])}, "hold NaN or infinity"),
        ({"images": np.zeros((2, 4)), "texts": np.array(["a", "b"])}, r"images must be \(N, h, w\)"),
    ],
)
def test_a_malformed_npz_is_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_examples(tmp_path / "bad.npz", CaptionDataConfig(path="x"))


def test_a_table_with_text_among_its_features_or_an_unknown_format_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,name,text\n1,x,one\n2,y,two\n")
    with pytest.raises(DataError, match=r"feature column\(s\) \['name'\] are not numbers"):
        read_examples(tmp_path / "t.csv", CaptionDataConfig(path="x"))
    with pytest.raises(DataError, match="has no column 'caption'"):
        read_examples(
            tmp_path / "t.csv", CaptionDataConfig(path="x", text_column="caption", feature_columns=["a"])
        )
    (tmp_path / "t.txt").write_text("1")
    with pytest.raises(DataError, match=r"cannot read t.txt: give an .npz"):
        read_examples(tmp_path / "t.txt", CaptionDataConfig(path="x"))


# ---------------------------------------------------------------- baselines and scores


def test_the_nearest_neighbour_gives_the_closest_training_examples_text():
    train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    queries = np.array([[9.0, 1.0], [1.0, 8.0], [0.5, 0.5]])
    assert nearest_texts(train, ["origin", "east", "north"], queries) == ["east", "north", "origin"]


def test_rates_count_exact_matches_and_edits():
    scores = rates(["a thin one upright", "a thin one uprigt"], ["a thin one upright", "a thin one upright"])
    assert scores["exact_match"] == 0.5
    assert scores["char_error_rate"] == pytest.approx(1 / 36) and scores["word_error_rate"] == pytest.approx(
        1 / 8
    )


# ---------------------------------------------------------------- the captioner's checks


def test_the_captioner_refuses_malformed_features_and_targets():
    model = build_model({"name": "captioner", "input_size": 4, "vocab_size": 9, "hidden_size": 8})
    good = torch.tensor([[5, 6, 3, -100], [7, 3, -100, -100]])
    loss, state = model.loss(torch.zeros(2, 4), good)
    assert loss.ndim == 0 and state is None
    with pytest.raises(ShapeError, match=r"features must be \(B, 4\) with B >= 1; got shape \(2, 3\)"):
        model.loss(torch.zeros(2, 3), good)
    with pytest.raises(DataError, match="features hold NaN"):
        model.encode(torch.full((2, 4), float("nan")))
    with pytest.raises(DTypeError, match="features must be floats"):
        model.encode(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(DataError, match="then -100 only: pad at the end"):
        model.loss(torch.zeros(2, 4), torch.tensor([[5, -100, 3], [7, 3, -100]]))
    with pytest.raises(ShapeError, match=r"targets must be \(B, S\) = \(2, S\)"):
        model.loss(torch.zeros(2, 4), good[:1])
    with pytest.raises(DTypeError, match="targets must be integer token ids"):
        model.loss(torch.zeros(2, 4), good.float())


def test_without_an_encoder_the_features_are_the_condition():
    model = build_model({"name": "captioner", "input_size": 5, "vocab_size": 9, "encoder_sizes": []})
    assert model.decoder.config.condition_size == 5 and len(model.encoder) == 0
    x = torch.randn(2, 5)
    assert torch.equal(model.start(x).condition[0], x)


# ---------------------------------------------------------------- end to end


def run_config(tmp_path, **data):
    data = {"path": "captions.npz", "test": 0.25, "validation": 0.1, "beam_width": 3, **data}
    model = {"hidden_size": 32, "encoder_sizes": [16], "embedding_dim": 8}
    train = {"epochs": 20, "batch_size": 16, "optimizer": {"lr": 0.01}}
    return write_run_config(tmp_path, "caption", data, model, train)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on generated examples with images: its folder, the metrics and the printed table."""
    folder = tmp_path_factory.mktemp("caption")
    write_npz(folder, images=np.random.default_rng(1).random((96, 3, 2)))
    said = []
    metrics = train_run(run_config(folder), log=said.append)
    return folder, metrics, "\n".join(said)


def test_examples_are_captioned_scored_beside_the_baselines_and_drawn(trained):
    folder, metrics, table = trained
    assert "model, greedy" in table and "model, beam 3" in table and "1-NN (standardised features)" in table
    assert "most frequent text" in table and "template attributes" not in table
    assert metrics["rows"]["model, greedy"]["exact_match"] > 0.9
    assert metrics["rows"]["model, beam 3"]["char_error_rate"] < 0.05
    assert (
        metrics["rows"]["1-NN"]["exact_match"] > 0.9 and metrics["rows"]["most frequent"]["exact_match"] < 0.5
    )
    assert (folder / "run" / "captions.png").is_file()


def test_the_predictor_captions_features_images_and_files(trained):
    folder = trained[0]
    captioner = rnnkit.load(folder / "run" / "bundle")
    features, texts, _ = examples(6, seed=5)
    assert captioner.caption(features[1]) == texts[1]
    assert captioner.caption(features, beam_width=3) == texts
    assert captioner.caption(torch.tensor(features[:2])) == texts[:2]
    assert len(captioner.caption(np.zeros((4, 3, 2)))) == 4  # images (h, w), as trained with
    sampled = captioner.caption(features, temperature=0.5, seed=4)
    assert sampled == captioner.caption(features, temperature=0.5, seed=4) and len(sampled) == 6
    assert captioner.predict(folder / "captions.npz")[:3] == WORDS
    assert captioner.predict(features[0]) == [texts[0]] and captioner.format("a b") == "a b"
    report = captioner.evaluate(folder / "captions.npz")
    assert "1-NN skipped: the training part is not at hand" in str(report)


def test_the_predictor_refuses_inputs_it_cannot_read(trained):
    captioner = rnnkit.load(trained[0] / "run" / "bundle")
    expected = r"\(6,\) features or \(N, 6\), or images \(3, 2\) or \(N, 3, 2\)"
    with pytest.raises(ShapeError, match=rf"inputs have shape \(2, 5\); this model reads {expected}"):
        captioner.caption(np.zeros((2, 5)))
    with pytest.raises(DataError, match="inputs hold NaN"):
        captioner.caption(np.full(6, np.nan))
    with pytest.raises(ShapeError, match="inputs must be numbers"):
        captioner.caption([["a"] * 6])
    with pytest.raises(ConfigError, match=r"beam search \(beam_width=2\) samples nothing"):
        captioner.caption(np.zeros(6), beam_width=2, temperature=0.5)
    with pytest.raises(ConfigError, match="temperature must be a finite number >= 0"):
        captioner.caption(np.zeros(6), temperature=-1)
    with pytest.raises(
        ConfigError, match=r"caption takes beam_width, temperature, seed and max_tokens; got \['n_best'\]"
    ):
        captioner.predict(np.zeros(6), n_best=2)


def test_a_short_run_on_the_digits_scores_the_templates_attributes(tmp_path):
    data = {"dataset": "digits", "test": 0.05, "validation": 0.05, "beam_width": 2}
    model = {"hidden_size": 16, "encoder_sizes": [16], "embedding_dim": 8}
    config = write_run_config(tmp_path, "caption", data, model, {"max_steps": 4, "batch_size": 64})
    said = []
    metrics = train_run(config, log=said.append)
    assert "template attributes right" in "\n".join(said)
    assert set(metrics["attributes"]["model, greedy"]) == {"name", "ink", "slant"}
    captioner = rnnkit.load(tmp_path / "run" / "bundle")
    images = np.zeros((2, 8, 8))
    assert len(captioner.caption(images)) == 2 and isinstance(captioner.caption(images[0]), str)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path": "x.npz", "dataset": "digits"}, "give path or dataset, one of them"),
        ({}, "give path or dataset"),
    ],
)
def test_a_data_section_that_cannot_work_is_refused(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        write_run_config(tmp_path, "caption", data)
