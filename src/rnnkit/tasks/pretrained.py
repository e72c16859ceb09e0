"""Models started from a trained language model: ULMFiT's transfer (Howard & Ruder 2018).

A classifier takes its embedding and encoder from one (``data.encoder_from``, the third stage), and
a language model can train on from one, on other text (``data.start_from``, the second stage:
adapting a general model to the task's texts).

The language model's bundle decides how texts become tokens (its codec: level, vocabulary or BPE
merges) and what the classifier's lower layers start from: its embedding and its recurrent
layers are copied into the classifier's embedding and encoder, layer by layer; the pooling and
the head start fresh. The classifier's encoder must therefore be the language model's: the same
cell, sizes and number of layers, unidirectional (the task fixes those keys from the bundle).

The key lives in the data section, beside ``data.vectors`` (pretrained word vectors): the bundle
fixes the encoding of the texts, which ``prepare`` fits from the data section before a model exists.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.bundle import load_bundle, read_bundle_config
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks.base import Prelude

SHARED = ("cell", "embedding_dim", "hidden_size", "num_layers", "layer_norm")  # the encoder's keys
# a language model's keys that shape no weight (its regularisers, and init): free when training on from it
FREE_KEYS = ("embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_drop", "init")


def language_model_config(path: str) -> dict[str, Any]:
    """The model section of the language-model bundle at ``path``, refused if it is another task's."""
    config = read_bundle_config(path)
    if config.get("task") != "language_model":
        raise ConfigError(
            f"data.encoder_from: {path} is a {config.get('task')!r} bundle; give a language model's "
            "(rnnkit train with task: language_model)"
        )
    return config["model"]


def fixed_keys(path: str) -> dict[str, Any]:
    """The classifier keys the language model fixes: its encoder's, and one direction."""
    model = language_model_config(path)
    return {**{key: model[key] for key in SHARED if key in model}, "bidirectional": False}


def language_model_keys(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A language model trained on from the bundle at ``path`` (``data.start_from``, ULMFiT's second
    stage): the keys it keeps (every one that shapes a weight) and those it starts from (its
    regularisers, which the model section may change)."""
    model = language_model_config(path)
    free = {key: value for key, value in model.items() if key in FREE_KEYS}
    return {key: value for key, value in model.items() if key not in FREE_KEYS}, free


@torch.no_grad()
def copy_language_model(model: nn.Module, path: str) -> int:
    """Copy every weight of the language model at ``path`` into ``model`` (the same architecture);
    the number of tensors copied."""
    source = load_bundle(path).model.state_dict()
    try:
        model.load_state_dict(source, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise ConfigError(f"data.start_from: {path} does not fit this model ({first})") from None
    return len(source)


def adaptation(encoder_from: str, texts: Sequence[str], adapt: Any, out_dir: Path, seed: int = 0) -> Prelude:
    """ULMFiT's second stage as a run: the language model at ``encoder_from`` trained on ``texts``
    (one a line in ``out_dir/texts.txt``, in an order shuffled by ``seed``, so the last 5% that
    scores it is a sample of them all; rewritten only when they change, so the token ids cached in
    ``out_dir/cache`` stay valid), with its own dropouts, Adam at ``adapt.lr`` and a slanted
    triangular schedule."""
    language_model_config(encoder_from)  # a language model's, or refused before any text is written
    corpus = Path(out_dir) / "texts.txt"
    lines = [" ".join(t.split()) for t in texts if t.strip()]
    random.Random(seed).shuffle(lines)
    text = "".join(line + "\n" for line in lines)
    if not corpus.is_file() or corpus.read_text(encoding="utf-8") != text:
        corpus.parent.mkdir(parents=True, exist_ok=True)
        partial = corpus.with_suffix(".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(corpus)
    data = {"path": str(corpus), "start_from": encoder_from, "seq_len": adapt.seq_len, "test": 0.05,
            "validation": 0.05, "eval_rows": adapt.batch_size,
            "cache_dir": str(Path(out_dir) / "cache")}  # fmt: skip
    config = {
        "task": "language_model",
        "out_dir": str(out_dir),
        "data": data,
        "model": {},  # the language model's dropouts (start_from suggests them)
        "train": {"epochs": adapt.epochs, "batch_size": adapt.batch_size, "clip_grad_norm": 0.25,
                  "optimizer": {"name": "adam", "lr": adapt.lr}, "schedule": {"name": "slanted_triangular"}},
    }  # fmt: skip
    after = {"encoder_from": str(Path(out_dir) / "bundle"), "adapt": adapt.model_copy(update={"epochs": 0}),
             "unlabelled_path": None}  # fmt: skip
    what = f"adapting the language model {encoder_from} to {len(texts):,} of the task's texts"
    return Prelude(config, after, what)


def codec_state(path: str) -> dict[str, Any]:
    """The language model's codec (its preprocessing), which encodes the classifier's texts."""
    preprocessing = load_bundle(path).preprocessing
    if "codec" not in preprocessing:
        raise DataError(f"{path}/preprocessing.json has no codec; save the bundle again")
    return preprocessing["codec"]


@torch.no_grad()
def copy_encoder(classifier: nn.Module, path: str) -> int:
    """Copy the language model's embedding and recurrent layers into ``classifier``; the number of
    tensors copied. Every encoder tensor of the classifier must get one of the same shape."""
    source = load_bundle(path).model.state_dict()
    target = classifier.state_dict()
    copied = {}
    for name, tensor in source.items():
        mine = _classifier_name(name)
        if mine is None:
            continue
        if mine not in target or target[mine].shape != tensor.shape:
            have = None if mine not in target else tuple(target[mine].shape)
            raise ConfigError(
                f"data.encoder_from: the language model's {name} {tuple(tensor.shape)} has no place in "
                f"this classifier ({mine}: {have}); train the classifier with the language model's encoder"
            )
        copied[mine] = tensor
    missing = [n for n in target if n.startswith(("embedding.", "encoder.")) and n not in copied]
    if missing:
        raise ConfigError(
            f"data.encoder_from: the language model has nothing for the classifier's {missing[:4]}: "
            "its cell or layers differ"
        )
    classifier.load_state_dict(copied, strict=False)
    return len(copied)


def _classifier_name(name: str) -> str | None:
    """A language model's tensor name -> the classifier's, or None for its decoder."""
    if name.startswith("embedding."):
        return name
    layer = re.match(r"^layers\.(\d+)\.(\w+?)_l0(_reverse)?$", name)
    if layer:
        return f"encoder.{layer.group(2)}_l{layer.group(1)}{layer.group(3) or ''}"
    if name.startswith("layers."):
        raise ConfigError(
            f"data.encoder_from: cannot place the language model's {name} in a classifier's encoder "
            "(cells rnn, lstm and gru without layer norm transfer)"
        )
    return None
