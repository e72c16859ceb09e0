"""ONNX signatures of the models that read whole padded sequences: classifier, tagger, autoencoder
and CTC. Each is one graph, ``model``: a batch (B, T, ...) and its lengths in, per-sequence or
per-step outputs out; nothing is carried between calls.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.export.graph import LENGTHS, Graph, Port, example_lengths, sequence_example, sequence_input
from rnnkit.functional.masking import lengths_to_mask


def classifier(model: nn.Module) -> list[Graph]:
    """Tokens or features -> class logits, probabilities and (attention pooling) the weights."""
    c = model.config
    C = 1 if c.head == "binary" else c.num_classes
    shape = ("B",) if c.head == "binary" else ("B", C)
    kind = (
        "softmax over classes" if c.head == "multiclass" else "sigmoid, P(class 1)" if C == 1 else "sigmoid"
    )
    outputs = [
        Port("logits", shape, "float32", "class scores"),
        Port("probabilities", shape, "float32", kind),
    ]
    if c.pooling == "attention":
        outputs.append(Port("attention", ("B", "T"), "float32", "attention pooling weights, 0 on padding"))

    def run(m, x, lengths):
        out = m(x, lengths)
        logits = out.logits
        probs = torch.softmax(logits, -1) if m.config.head == "multiclass" else torch.sigmoid(logits)
        return (logits, probs) if out.attention is None else (logits, probs, out.attention)

    inputs = (sequence_input(c.vocab_size, c.input_size), LENGTHS)
    return [Graph("model", inputs, tuple(outputs), run, sequence_example(c.vocab_size, c.input_size))]


def tagger(model: nn.Module) -> list[Graph]:
    """Tokens (with their characters, if the tagger reads them) -> each step's tag scores; a CRF
    head's Viterbi runs outside the graph on the scores in the export's metadata."""
    c = model.config
    if c.char_vocab_size:
        tokens = Port("tokens", ("B", "T", "W"), "int64", "per token: its word id, then its character ids")
    else:
        tokens = sequence_input(c.vocab_size, None)
    emissions = Port("emissions", ("B", "T", c.num_tags), "float32", "each step's tag scores")
    note = "softmax head: argmax of emissions over each real step"
    if c.head == "crf":
        note = "crf head: Viterbi over emissions with metadata crf.start, crf.transitions, crf.end"

    def run(m, x, lengths):
        return (m(x, lengths),)

    def example(m, B, T, gen):
        words = torch.randint(1, c.vocab_size, (B, T), generator=gen)
        if c.char_vocab_size:
            chars = torch.randint(0, c.char_vocab_size, (B, T, 6), generator=gen)
            words = torch.cat([words[..., None], chars], -1)  # (B, T, 1 + W)
        return words, example_lengths(B, T, gen)

    return [Graph("model", (tokens, LENGTHS), (emissions,), run, example, note)]


def autoencoder(model: nn.Module) -> list[Graph]:
    """Windows -> their reconstruction and each step's error (the anomaly score)."""
    D = model.config.input_size
    outputs = (
        Port("reconstructions", ("B", "T", D), "float32", "the reconstruction of every step"),
        Port("errors", ("B", "T"), "float32", "squared error per step, mean over features; 0 on padding"),
    )

    def run(m, x, lengths):
        rebuilt = m(x, lengths)  # (B, T, D)
        # SequenceAutoencoder.errors's maths on this reconstruction: calling it would run the network
        # twice, in the graph too (tests/test_export_onnx.py checks the two agree)
        errors = (rebuilt - x).pow(2).mean(-1)  # (B, T)
        return rebuilt, errors * lengths_to_mask(lengths, x.shape[1], x.device)

    return [Graph("model", (sequence_input(None, D), LENGTHS), outputs, run, sequence_example(None, D))]


def ctc(model: nn.Module) -> list[Graph]:
    """Frames -> per-frame log-probabilities over the labels and the blank, for CTC decoding."""
    c = model.config
    D, C = c.input_size, model.output.out_features
    out = Port("log_probs", ("B", "T", C), "float32", "per-frame log-probabilities; label 0 is the blank")

    def run(m, x, lengths):
        return (m(x, lengths),)

    return [Graph("model", (sequence_input(None, D), LENGTHS), (out,), run, sequence_example(None, D))]
