"""Padding invariance: a sequence in a padded batch behaves exactly as it does alone.

For every layer kind, direction, depth and execution path: the outputs on a sequence's real steps and
its final state equal those of the same sequence run alone (batch of 1, its true length, no padding),
and the outputs on padded steps are exactly zero, whatever garbage the padding holds. A bidirectional
layer whose backward direction started from the padded end would break this.
"""

from __future__ import annotations

import layer_factory
import pytest
import torch
from layer_factory import KINDS, VARIANTS

import rnnkit

D, H, T = 3, 4, 5
LENGTHS = [5, 3, 1, 4]


def make_layer(kind: str, variant: str, num_layers: int = 1, bidirectional: bool = False, **options):
    return layer_factory.make_layer(kind, variant, D, H, num_layers, bidirectional=bidirectional, **options)


def padded_input(lengths=LENGTHS, time=T, features=D, seed=1):
    """(B, T, D) float64 input whose padded steps hold large nonzero garbage."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, features, generator=g, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[b, n:] = 5.0 + torch.rand(time - n, features, generator=g, dtype=torch.float64)
    return x


def lengths_as(kind: str, lengths=LENGTHS):
    return {
        "list": list(lengths),
        "tuple": tuple(lengths),
        "int64": torch.tensor(lengths, dtype=torch.int64),
        "int32": torch.tensor(lengths, dtype=torch.int32),
        "cuda": torch.tensor(lengths, device="cuda") if kind == "cuda" else None,
    }[kind]


LENGTH_KINDS = ["list", "tuple", "int64", "int32"] + (["cuda"] if torch.cuda.is_available() else [])


def assert_padding_invariant(layer, x, lengths=LENGTHS, lengths_arg=None, state=None):
    """Run the padded batch once, then each sequence alone, and compare."""
    lengths_arg = list(lengths) if lengths_arg is None else lengths_arg
    out = layer(x, state, lengths_arg)
    B = len(lengths)
    assert out.outputs.shape[:2] == (B, x.shape[1])
    for b, n in enumerate(lengths):
        alone_state = None if state is None else tuple(f[:, b : b + 1] for f in state)
        alone = layer(x[b : b + 1, :n], alone_state)
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], rtol=1e-9, atol=1e-10)
        assert torch.all(out.outputs[b, n:] == 0), f"sequence {b}: nonzero outputs on padded steps"
        assert len(out.state) == len(alone.state)
        for field, got, want in zip(out.state._fields, out.state, alone.state, strict=True):
            torch.testing.assert_close(
                got[:, b], want[:, 0], rtol=1e-9, atol=1e-10, msg=lambda m, b=b, f=field: f"seq {b} {f}: {m}"
            )
    return out


# ---------------------------------------------------------------- the built-in layers


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_is_padding_invariant(kind, bidirectional, num_layers, variant):
    layer = make_layer(kind, variant, num_layers, bidirectional)
    out = assert_padding_invariant(layer, padded_input())
    K = 2 if bidirectional else 1
    assert out.outputs.shape == (len(LENGTHS), T, K * H)
    assert out.state.h.shape == (num_layers * K, len(LENGTHS), H)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lengths_kind", LENGTH_KINDS)
def test_lengths_of_every_accepted_type(lengths_kind, kind, variant):
    layer = make_layer(kind, variant, num_layers=2, bidirectional=True)
    x = padded_input()
    out = assert_padding_invariant(layer, x, lengths_arg=lengths_as(lengths_kind))
    reference = layer(x, lengths=list(LENGTHS))
    assert torch.equal(out.outputs, reference.outputs)
    for got, want in zip(out.state, reference.state, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_padding_invariant_with_a_given_initial_state(kind, variant):
    layer = make_layer(kind, variant, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(2)
    fields = len(layer.state_type._fields)
    state = tuple(torch.randn(4, len(LENGTHS), H, generator=g, dtype=torch.float64) for _ in range(fields))
    assert_padding_invariant(layer, padded_input(), state=state)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_padded_input_does_not_change_the_unpadded_sequences(kind, variant):
    # a full-length sequence must not notice that its neighbours are padded
    layer = make_layer(kind, variant, num_layers=2, bidirectional=True)
    x = padded_input()
    padded = layer(x, lengths=LENGTHS)
    unpadded = layer(x[:1])  # sequence 0 has length T
    torch.testing.assert_close(padded.outputs[:1], unpadded.outputs, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_backward_half_starts_at_the_last_real_step(kind, variant):
    # the backward half's output at step 0 summarises the whole real sequence, and at the last real
    # step it has seen exactly one input: that of the last real step
    layer = make_layer(kind, variant, num_layers=1, bidirectional=True)
    x = padded_input()
    out = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        last_only = layer(x[b : b + 1, n - 1 : n])
        torch.testing.assert_close(
            out.outputs[b, n - 1, H:], last_only.outputs[0, 0, H:], rtol=1e-9, atol=1e-10
        )
        # the backward final state is the one after reading step 0
        torch.testing.assert_close(out.state.h[1, b], out.outputs[b, 0, H:], rtol=0, atol=0)


def test_garbage_in_padding_does_not_leak():
    # two batches that differ only in their padding give identical results
    for kind in KINDS:
        for variant in VARIANTS:
            layer = make_layer(kind, variant, num_layers=2, bidirectional=True)
            x1 = padded_input(seed=1)
            x2 = x1.clone()
            for b, n in enumerate(LENGTHS):
                x2[b, n:] = -x2[b, n:] * 3.0
            out1, out2 = layer(x1, lengths=LENGTHS), layer(x2, lengths=LENGTHS)
            assert torch.equal(out1.outputs, out2.outputs), (kind, variant)
            for a, b in zip(out1.state, out2.state, strict=True):
                assert torch.equal(a, b), (kind, variant)


# ---------------------------------------------------------------- the wrappers


def test_recurrent_reverse_is_padding_invariant():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(rnnkit.LSTMCell(D, H), reverse=True).double()
    assert_padding_invariant(layer, padded_input())


@pytest.mark.parametrize("cell_class", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_stacked_residual_is_padding_invariant(cell_class, bidirectional):
    torch.manual_seed(0)
    K = 2 if bidirectional else 1
    width = K * H  # every layer reads and writes `width` features, so every residual applies

    def layer():
        recurrent = rnnkit.Recurrent(cell_class(width, H))
        return rnnkit.Bidirectional(recurrent) if bidirectional else recurrent

    stacked = rnnkit.Stacked([layer(), layer(), layer()], residual=True).double()
    x = padded_input(features=width)
    out = assert_padding_invariant(stacked, x)
    assert out.outputs.shape == (len(LENGTHS), T, width)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_like_layer_with_residual_is_padding_invariant(kind):
    torch.manual_seed(0)
    cls = {"rnn_tanh": rnnkit.RNN, "rnn_relu": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[kind]
    options = {"nonlinearity": kind.split("_")[1]} if kind.startswith("rnn") else {}
    layer = cls(H, H, num_layers=3, residual=True, **options).double()
    assert layer.path == "cell"
    assert_padding_invariant(layer, padded_input(features=H))


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
@pytest.mark.parametrize("cell_class", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
def test_bidirectional_merge_modes_are_padding_invariant(cell_class, merge):
    torch.manual_seed(0)
    bi = rnnkit.Bidirectional(rnnkit.Recurrent(cell_class(D, H)), merge=merge).double()
    out = assert_padding_invariant(bi, padded_input())
    assert out.outputs.shape[-1] == (2 * H if merge == "concat" else H)


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_stacked_bidirectional_merges_with_residual_are_padding_invariant(merge):
    torch.manual_seed(0)
    width = 2 * H if merge == "concat" else H
    layers = [
        rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.LSTMCell(D, H)), merge=merge),
        rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.LSTMCell(width, H, layer_norm=True)), merge=merge),
    ]
    # layer 1 maps width -> width, so it gets a residual; layer 0 (D -> width) does not
    stacked = rnnkit.Stacked(layers, residual=True).double()
    assert_padding_invariant(stacked, padded_input())
