"""A text classifier started from a trained language model (``data.encoder_from``; ULMFiT's transfer).

The language model's bundle decides how texts become tokens (its codec: level, vocabulary or BPE
merges) and what the classifier's lower layers start from: its embedding and its recurrent
layers are copied into the classifier's embedding and encoder, layer by layer; the pooling and
the head start fresh. The classifier's encoder must therefore be the language model's: the same
cell, sizes and number of layers, unidirectional (the task fixes those keys from the bundle).

The key lives in the data section, beside ``data.vectors`` (pretrained word vectors): the bundle
fixes the encoding of the texts, which ``prepare`` fits from the data section before a model exists.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from rnnkit.bundle import load_bundle, read_bundle_config
from rnnkit.errors import ConfigError, DataError

SHARED = ("cell", "embedding_dim", "hidden_size", "num_layers", "layer_norm")  # the encoder's keys


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


def codec_state(path: str) -> dict[str, Any]:
    """The language model's codec (its preprocessing), which encodes the classifier's texts."""
    preprocessing = load_bundle(path).preprocessing
    if "codec" not in preprocessing:
        raise DataError(f"data.encoder_from: {path}/preprocessing.json has no codec; save the bundle again")
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
