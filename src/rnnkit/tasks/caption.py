"""Describe a feature vector in a short text: an encoder's vector conditions a recurrent decoder.

The data are examples of features and a text each:

- ``dataset: digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, pixel values
  0-16, the 64 pixels the features), each described by :func:`describe_digits`'s template;
- ``path``: a file of your own: an ``.npz`` with ``features`` (N, F) floats (or ``images`` (N, h,
  w), flattened) and ``texts`` (N,) strings, optionally ``labels`` (N,) to stratify the split by
  (and ``images`` beside ``features``, to draw them); or a table (.csv, .tsv, .jsonl, .parquet)
  with a ``text_column``, an optional ``label_column``, and numeric feature columns (every other
  column, or ``feature_columns``).

"Any encoder": the model's own encoder is a small MLP over the features (``model.encoder_sizes``);
features computed by an encoder of your own (a CNN's image embedding, a sentence vector) go in
the file as ``features``, with ``encoder_sizes: []`` to read them as they are.

The digits' template, deterministic and measured from each image's pixels p(y, x) (row y down,
column x right), reads "a {ink} {name} {slant}", e.g. "a thick seven leaning right":

- name: the digit's label spelled out (zero .. nine);
- ink: the image's total ink, sum p(y, x), in thirds cut at the training part's 1/3 and 2/3
  quantiles: thin, medium, thick (the cuts are kept with the model);
- slant: the shear of the ink, -mu11 / mu02 from the central image moments (mu11 = mean of
  (x - x̄)(y - ȳ), mu02 = mean of (y - ȳ)², weighted by ink): how far the ink moves right, in
  pixels, per pixel up. Beyond ``slant_threshold`` (0.1, about 6 degrees) either way it is
  "leaning right" or "leaning left", else "upright".

Examples are split into training, validation and test parts (stratified by label when there are
labels, the digit for the digits; seeded), features are standardised on the training part, and
texts are read as characters (``level: char``) or words. The test table gives exact match,
character error rate and word error rate of greedy decoding and of beam search, beside the text of
the nearest training example in standardised feature space (1-NN) and the training part's most
frequent text; for the digits also how often each attribute of the template is right.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from rnnkit.config import Config
from rnnkit.data import make_scaler, scaler_from_state
from rnnkit.data.batch import Batch
from rnnkit.data.captions import (  # noqa: F401 (the template and readers are part of the task's API)
    DIGIT_NAMES,
    INK_WORDS,
    SLANT_WORDS,
    TEMPLATE,
    Examples,
    describe_digits,
    ink,
    ink_cuts,
    load_digits,
    read_examples,
    slant,
)
from rnnkit.data.labels import stratified_split
from rnnkit.data.vocab import TextCodec
from rnnkit.decoding import beam_generate, generate
from rnnkit.errors import DataError
from rnnkit.metrics import sequence_metrics
from rnnkit.models.captioner import Captioner
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task


class CaptionDataConfig(Config):
    """Where the examples are, how their texts are read and how they are split (module docs)."""

    path_keys: ClassVar[tuple[str, ...]] = ("path",)

    dataset: Literal["digits"] | None = Field(None, description="digits: scikit-learn's 8x8 digits")
    path: str | None = Field(None, description="an .npz (features, texts) or a table (.csv, .jsonl, ...)")
    text_column: str = Field("text", description="tables: the column of texts")
    label_column: str | None = Field(None, description="tables: a column to stratify the split by")
    feature_columns: list[str] | None = Field(None, description="tables: None reads every other column")
    level: Literal["char", "word"] = Field("char", description="the tokens the decoder writes")
    lower: bool = False
    test: float = Field(0.2, gt=0, lt=1, description="share of examples for testing")
    validation: float = Field(0.1, ge=0, lt=1, description="share of the rest for early stopping")
    split_seed: int = 0
    slant_threshold: float = Field(0.1, gt=0, description="digits: the shear beyond which a digit leans")
    beam_width: int = Field(4, ge=1, description="beam search's width in the table")
    max_tokens: int | None = Field(None, ge=1, description="tokens a text may have; None: longest + 10")

    @model_validator(mode="after")
    def _one_source(self) -> CaptionDataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give path or dataset, one of them")
        return self


# ---- datasets ------------------------------------------------------------------------------------


class CaptionDataset(Dataset):
    """Examples as (features (F,) float32, token ids (S,) ending in eos)."""

    def __init__(self, features: np.ndarray, ids: list[list[int]]) -> None:
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.ids = [torch.tensor(row, dtype=torch.long) for row in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.ids[index]


def pad_captions(examples) -> Batch:
    """Features stacked (B, F), token ids padded with -100 after each text's eos (B, S)."""
    features, ids = zip(*examples, strict=True)
    targets = torch.nn.utils.rnn.pad_sequence(list(ids), batch_first=True, padding_value=-100)
    return Batch(torch.stack(features), targets)


@dataclass(kw_only=True)
class CaptionPrepared(Prepared):
    codec: TextCodec
    features: dict[str, np.ndarray]  # "train" and "test", standardised
    texts: dict[str, list[str]]
    images: np.ndarray | None  # the test part's images, to draw
    template: bool  # the texts are the digits' template: score its attributes


def prepare(
    config: CaptionDataConfig, preprocessing=None, path=None, batch_size: int = 32
) -> CaptionPrepared:
    template = None
    if path is not None:
        parts = {"train": None, "validation": None, "test": read_examples(path, config)}
    elif config.dataset == "digits":
        parts, template = _digit_parts(config, preprocessing)
    else:
        parts = _split(read_examples(config.path, config), config)
    if preprocessing is None:
        train = parts["train"]
        codec = TextCodec.fit(train.texts, level=config.level, lower=config.lower)
        longest = max(len(codec.encode(t, eos=True)) for t in train.texts)
        preprocessing = {
            "codec": codec.state_dict(),
            "scaler": make_scaler("standard").fit(train.features).state_dict(),
            "features": train.features.shape[1],
            "image_shape": None if train.images is None else list(train.images.shape[1:]),
            "max_tokens": config.max_tokens or longest + 10,
            "beam_width": config.beam_width,
            "most_frequent": Counter(train.texts).most_common(1)[0][0],
            "template": template,
        }
    codec = TextCodec.from_state(preprocessing["codec"])
    scaler = scaler_from_state(preprocessing["scaler"])
    datasets, features, texts = {}, {}, {}
    for name in ("train", "validation", "test"):
        part = parts[name]
        if part is None or not len(part.features):
            datasets[name] = None
            continue
        if part.features.shape[1] != preprocessing["features"]:
            raise DataError(
                f"the {name} examples have {part.features.shape[1]} features; the model reads "
                f"{preprocessing['features']}"
            )
        features[name] = scaler.transform(part.features).astype(np.float32)
        texts[name] = part.texts
        datasets[name] = CaptionDataset(features[name], [codec.encode(t, eos=True) for t in part.texts])
    return CaptionPrepared(
        train=datasets["train"], validation=datasets["validation"], test=datasets["test"],
        preprocessing=preprocessing, collate=pad_captions, codec=codec, features=features, texts=texts,
        images=parts["test"].images, template=config.dataset == "digits" and path is None,
        part=f"all of {path}" if path is not None else "test part",
    )  # fmt: skip


def _digit_parts(config: CaptionDataConfig, preprocessing) -> tuple[dict[str, Examples], dict[str, Any]]:
    """The digits' parts, described with the template's cuts: the training part's, or the bundle's."""
    images, digits = load_digits()
    i_train, i_val, i_test = stratified_split(
        digits.tolist(), config.test, config.validation, config.split_seed
    )
    template = (preprocessing or {}).get("template") or {
        "ink_cuts": ink_cuts(images[i_train]),
        "slant_threshold": config.slant_threshold,
    }
    texts = describe_digits(images, digits, template["ink_cuts"], template["slant_threshold"])
    part = lambda rows: Examples(  # noqa: E731
        images[rows].reshape(len(rows), -1), [texts[i] for i in rows], None, images[rows]
    )
    return {"train": part(i_train), "validation": part(i_val), "test": part(i_test)}, template


def _split(examples: Examples, config: CaptionDataConfig) -> dict[str, Examples | None]:
    """Seeded parts, stratified by the labels when there are (one group otherwise: a plain shuffle)."""
    n = len(examples.features)
    labels = examples.labels or ["all"] * n
    rows = stratified_split(labels, config.test, config.validation, config.split_seed)

    def part(index: np.ndarray) -> Examples:
        images = None if examples.images is None else examples.images[index]
        return Examples(examples.features[index], [examples.texts[i] for i in index], None, images)

    return dict(zip(("train", "validation", "test"), (part(i) for i in rows), strict=True))


# ---- decoding and evaluation ---------------------------------------------------------------------


@torch.no_grad()
def captions(
    model: Captioner,
    features: np.ndarray,
    codec: TextCodec,
    max_tokens: int,
    *,
    beam_width: int | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
    batch_size: int = 256,
) -> list[str]:
    """The text of each row of standardised ``features`` (N, F): greedy (temperature 0), sampled at
    ``temperature`` (``seed`` repeats it), or the best of a beam of ``beam_width``."""
    vocab = codec.vocab
    options = {"eos_id": vocab.eos_id, "banned": (vocab.pad_id, vocab.unk_id, vocab.bos_id)}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for i, start in enumerate(range(0, len(features), batch_size)):
            x = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size], np.float32))
            condition = model.encode(x.to(device))  # (B, C)
            prompt = torch.full((len(x), 1), model.config.bos_id, dtype=torch.long)  # (B, 1)
            if beam_width is not None:
                found = beam_generate(
                    model.decoder, prompt, max_tokens, beam_width=beam_width, condition=condition, **options
                )
                rows = [hypotheses[0].tokens for hypotheses in found]
            else:
                sampled = dict(greedy=True) if temperature == 0 else dict(temperature=temperature)
                seeded = None if seed is None else seed + i
                tokens = generate(
                    model.decoder, prompt, max_tokens, seed=seeded, condition=condition, **sampled, **options
                ).tokens.tolist()
                rows = [row[: row.index(vocab.eos_id)] if vocab.eos_id in row else row for row in tokens]
            out += [codec.decode(row) for row in rows]
    finally:
        model.train(was_training)
    return out


def nearest_texts(train: np.ndarray, train_texts: list[str], queries: np.ndarray) -> list[str]:
    """The text of each query's nearest training example (Euclidean; the first on ties)."""
    distances = torch.cdist(torch.from_numpy(queries).double(), torch.from_numpy(train).double())  # (N, M)
    return [train_texts[i] for i in distances.argmin(1).tolist()]


def rates(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Exact match (the texts equal), and character and word error rates (edits over reference length)."""
    words = sequence_metrics([h.split() for h in hypotheses], [[r.split()] for r in references])
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
    return {
        "exact_match": exact,
        "char_error_rate": words["char_error_rate"],
        "word_error_rate": words["token_error_rate"],
    }


def attributes_right(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """The digits' template: how often each attribute of the reference is the one written."""
    right = Counter()
    for h, r in zip(hypotheses, references, strict=True):
        said, true = TEMPLATE.match(h), TEMPLATE.match(r)
        for k, attribute in enumerate(("ink", "name", "slant")):
            right[attribute] += bool(said and true and said.group(k + 1) == true.group(k + 1))
    return {key: right[key] / len(references) for key in ("name", "ink", "slant")}


def evaluate(model: Captioner, prepared: CaptionPrepared) -> dict[str, Any]:
    pre, references = prepared.preprocessing, prepared.texts["test"]
    test = prepared.features["test"]
    results: dict[str, Any] = {
        "part": prepared.part, "examples": len(references),
        "characters": sum(len(r) for r in references), "skipped": {},
    }  # fmt: skip
    said = {}
    width = pre["beam_width"]
    for name, beam in (("greedy", None), (f"beam {width}", width)):
        said[f"model, {name}"] = captions(model, test, prepared.codec, pre["max_tokens"], beam_width=beam)
    if "train" in prepared.features:
        said["1-NN"] = nearest_texts(prepared.features["train"], prepared.texts["train"], test)
    else:
        results["skipped"]["1-NN"] = "the training part is not at hand when a file is evaluated"
    said["most frequent"] = [pre["most_frequent"]] * len(references)
    results["rows"] = {name: rates(texts, references) for name, texts in said.items()}
    if prepared.template:
        results["attributes"] = {name: attributes_right(texts, references) for name, texts in said.items()}
    results["examples_shown"] = [
        {"reference": r, **{name: texts[i] for name, texts in said.items()}}
        for i, r in enumerate(references[:5])
    ]
    return results


def metrics_table(results: dict[str, Any]) -> str:
    lines = [f"{results['part']}: {results['examples']} examples, {results['characters']:,} characters"]
    lines += [f"  ({who} skipped: {why})" for who, why in results.get("skipped", {}).items()]
    lines.append(f"  {'':<28}{'exact match':>12}{'char. err.':>12}{'word err.':>12}")
    for name, value in results["rows"].items():
        label = {"1-NN": "1-NN (standardised features)", "most frequent": "most frequent text"}.get(
            name, name
        )
        lines.append(
            f"  {label:<28}{value['exact_match']:>12.4f}{value['char_error_rate']:>12.4f}"
            f"{value['word_error_rate']:>12.4f}"
        )
    if "attributes" in results:
        lines.append(f"  template attributes right:  {'name':>8}{'ink':>8}{'slant':>8}")
        for name, value in results["attributes"].items():
            lines.append(f"    {name:<26}{value['name']:>8.4f}{value['ink']:>8.4f}{value['slant']:>8.4f}")
    return "\n".join(lines)


class CaptionTask(Task[CaptionDataConfig, CaptionPrepared]):
    """Write a short text for each feature vector (an image's pixels, an encoder's embedding)."""

    name = "caption"
    data_config = CaptionDataConfig
    default_model = "captioner"
    fitted_keys: ClassVar = {
        "input_size": "the features of each example",
        "vocab_size": "the tokens of the training texts",
    }
    preprocessing_keys = ("codec", "scaler", "features", "max_tokens")

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> CaptionPrepared:
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config, prepared=None) -> ModelKeys:
        if prepared is None:
            return ModelKeys()
        vocab = prepared.codec.vocab
        return ModelKeys(
            {
                "input_size": prepared.preprocessing["features"],
                "vocab_size": len(vocab),
                "bos_id": vocab.bos_id,
            }
        )

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """captions.png: the first 16 test images, each with its true text and the model's (greedy
        and beam search); drawn when the examples have images (the digits, an .npz with images)."""
        if prepared.images is None:
            return []
        from rnnkit import plots

        pre, n = prepared.preprocessing, min(16, len(prepared.images))
        features = prepared.features["test"][:n]
        greedy = captions(model, features, prepared.codec, pre["max_tokens"])
        beam = captions(model, features, prepared.codec, pre["max_tokens"], beam_width=pre["beam_width"])
        true = prepared.texts["test"]

        def mark(said: list[str], i: int) -> str:
            return said[i] if said[i] == true[i] else f"{said[i]}  (wrong)"

        panels = [
            (prepared.images[i], f"true:   {true[i]}\ngreedy: {mark(greedy, i)}\nbeam:   {mark(beam, i)}")
            for i in range(n)
        ]
        title = (
            f"The first {n} test images: the true text, then the model's (greedy, beam {pre['beam_width']})"
        )
        return [plots.plot_image_grid(panels, out_dir / "captions.png", title)]

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.caption_use import CaptionPredictor

        return CaptionPredictor(self, bundle)


register_task(CaptionTask())
