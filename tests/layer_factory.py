"""Builds the float64 layers the padding and streaming tests share."""

import torch

import rnnkit

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
VARIANTS = ["fused", "cell", "layer_norm"]
LAYERS = {"rnn_tanh": rnnkit.RNN, "rnn_relu": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def make_layer(kind: str, variant: str, input_size: int, hidden_size: int, num_layers: int = 1, **options):
    """A float64 rnnkit layer; variant "fused" (the default path), "cell", or "layer_norm" (cell only)."""
    torch.manual_seed(0)
    if variant == "cell":
        options["path"] = "cell"
    elif variant == "layer_norm":
        options["layer_norm"] = True
    if kind.startswith("rnn"):
        options["nonlinearity"] = kind.split("_")[1]
    layer = LAYERS[kind](input_size, hidden_size, num_layers=num_layers, **options).double()
    assert layer.path == ("fused" if variant == "fused" else "cell")
    return layer
