"""Streaming: a sequence cut into chunks, with the state carried between calls, equals one shot.

Also the cell API (stepping a cell by hand equals Recurrent(cell)) and interop with torch.nn: a state
produced by torch.nn.LSTM/GRU/RNN continues identically in rnnkit's layer with the same weights.
"""

from __future__ import annotations

import layer_factory
import pytest
import torch
from layer_factory import KINDS, VARIANTS
from torch import nn

import rnnkit

D, H, T = 3, 4, 12
CHUNKS = [5, 4, 3]


def make_layer(kind: str, variant: str, num_layers: int = 1, **options):
    return layer_factory.make_layer(kind, variant, D, H, num_layers, **options)


def stream(layer, x, chunks, state=None):
    """Run x (B, T, D) chunk by chunk, carrying the state; returns (outputs (B, T, H), final state)."""
    outputs = []
    for part in x.split(chunks, dim=1):
        out = layer(part, state)
        outputs.append(out.outputs)
        state = out.state
    return torch.cat(outputs, 1), state


def assert_state_close(got, want, **tol):
    assert type(got) is type(want)
    for field, a, b in zip(want._fields, got, want, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, f=field: f"state.{f}: {m}", **tol)


@pytest.fixture
def x():
    return torch.randn(2, T, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_chunked_stream_equals_one_shot(kind, num_layers, variant, x):
    layer = make_layer(kind, variant, num_layers)
    whole = layer(x)
    outputs, state = stream(layer, x, CHUNKS)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(state, whole.state, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_one_step_chunks_equal_one_shot(kind, variant, x):
    layer = make_layer(kind, variant, num_layers=2)
    whole = layer(x)
    outputs, state = stream(layer, x, [1] * T)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(state, whole.state, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stream_from_a_given_initial_state(kind, variant, x):
    layer = make_layer(kind, variant, num_layers=2)
    g = torch.Generator().manual_seed(3)
    state = layer.state_type(
        *(torch.randn(2, 2, H, generator=g, dtype=torch.float64) for _ in layer.state_type._fields)
    )
    whole = layer(x, state)
    outputs, final = stream(layer, x, CHUNKS, state)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(final, whole.state, rtol=1e-9, atol=1e-10)
    # and the given state matters: starting from zeros gives something else
    assert not torch.allclose(layer(x).outputs, whole.outputs)


@pytest.mark.parametrize("kind", KINDS)
def test_fused_and_cell_paths_agree_on_a_stream(kind, x):
    fused, cell = make_layer(kind, "fused", 2), make_layer(kind, "cell", 2)
    cell.load_state_dict(fused.state_dict())
    out_fused, state_fused = stream(fused, x, CHUNKS)
    out_cell, state_cell = stream(cell, x, CHUNKS)
    torch.testing.assert_close(out_cell, out_fused, rtol=1e-9, atol=1e-10)
    assert_state_close(state_cell, state_fused, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_state_carries_across_paths(kind, x):
    # a state from the fused path continues on the cell path, and back
    fused, cell = make_layer(kind, "fused", 2), make_layer(kind, "cell", 2)
    cell.load_state_dict(fused.state_dict())
    whole = fused(x)
    first = fused(x[:, :5])
    second = cell(x[:, 5:9], first.state)
    third = fused(x[:, 9:], second.state)
    outputs = torch.cat([first.outputs, second.outputs, third.outputs], 1)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(third.state, whole.state, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_stream_in_eval_with_zoneout_and_recurrent_dropout(kind, x):
    # cell-only regularisers are deterministic in eval mode, so a stream must still equal one shot
    layer = make_layer(kind, "cell", 2, zoneout=0.3, recurrent_dropout=0.2).eval()
    whole = layer(x)
    outputs, state = stream(layer, x, CHUNKS)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(state, whole.state, rtol=1e-9, atol=1e-10)


def test_stream_through_stacked_residual(x):
    torch.manual_seed(0)
    layers = [rnnkit.Recurrent(rnnkit.LSTMCell(D, H)), rnnkit.Recurrent(rnnkit.LSTMCell(H, H))]
    stacked = rnnkit.Stacked(layers, residual=True).double()
    whole = stacked(x)
    outputs, state = stream(stacked, x, CHUNKS)
    torch.testing.assert_close(outputs, whole.outputs, rtol=1e-9, atol=1e-10)
    assert_state_close(state, whole.state, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize(
    "cell_class, options",
    [
        (rnnkit.LSTMCell, {}),
        (rnnkit.LSTMCell, {"layer_norm": True}),
        (rnnkit.GRUCell, {}),
        (rnnkit.RNNCell, {"nonlinearity": "relu"}),
    ],
    ids=["lstm", "lstm_ln", "gru", "rnn_relu"],
)
def test_stepping_a_cell_equals_recurrent(cell_class, options, x):
    torch.manual_seed(0)
    cell = cell_class(D, H, **options).double()
    layer = rnnkit.Recurrent(cell)
    whole = layer(x)
    state, ys = None, []
    for t in range(T):
        y, state = cell(x[:, t], state)
        assert y.shape == (2, H)
        ys.append(y)
    assert isinstance(state, cell_class.state_type)
    torch.testing.assert_close(torch.stack(ys, 1), whole.outputs, rtol=1e-12, atol=1e-12)
    for got, want in zip(state, whole.state, strict=True):
        assert want.shape == (1, 2, H)
        torch.testing.assert_close(got, want[0], rtol=1e-12, atol=1e-12)


def test_lstm_cell_output_is_h_and_state_is_named(x):
    torch.manual_seed(0)
    cell = rnnkit.LSTMCell(D, H).double()
    y, state = cell(x[:, 0])
    assert isinstance(state, rnnkit.LSTMState)
    assert torch.equal(y, state.h)
    assert not torch.equal(state.h, state.c)


def test_lstm_cell_matches_torch_lstm_cell(x):
    torch.manual_seed(0)
    ours = rnnkit.LSTMCell(D, H).double()
    theirs = nn.LSTMCell(D, H).double()
    theirs.load_state_dict(ours.state_dict())
    h = c = torch.zeros(2, H, dtype=torch.float64)
    state = None
    for t in range(T):
        h, c = theirs(x[:, t], (h, c))
        _, state = ours(x[:, t], state)
    torch.testing.assert_close(state.h, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.c, c, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- torch interop


@pytest.mark.parametrize("path", ["auto", "cell"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_lstm_state_continues_in_rnnkit(num_layers, path, x):
    torch.manual_seed(0)
    theirs = nn.LSTM(D, H, num_layers=num_layers, batch_first=True).double()
    ours = rnnkit.LSTM(D, H, num_layers=num_layers, path=path).double()
    ours.load_state_dict(theirs.state_dict())
    whole, (h_n, c_n) = theirs(x)

    first, (h, c) = theirs(x[:, :5])
    out = ours(x[:, 5:], (h, c))
    torch.testing.assert_close(torch.cat([first, out.outputs], 1), whole, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.state.h, h_n, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.state.c, c_n, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path", ["auto", "cell"])
def test_rnnkit_lstm_state_continues_in_torch(path, x):
    torch.manual_seed(0)
    theirs = nn.LSTM(D, H, num_layers=2, batch_first=True).double()
    ours = rnnkit.LSTM(D, H, num_layers=2, path=path).double()
    ours.load_state_dict(theirs.state_dict())
    whole, (h_n, c_n) = theirs(x)
    first = ours(x[:, :7])
    rest, (h, c) = theirs(x[:, 7:], tuple(first.state))
    torch.testing.assert_close(torch.cat([first.outputs, rest], 1), whole, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_n, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(c, c_n, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path", ["auto", "cell"])
@pytest.mark.parametrize(
    "ours_class, theirs_class, options",
    [
        (rnnkit.GRU, nn.GRU, {}),
        (rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
        (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
    ],
    ids=["gru", "rnn_tanh", "rnn_relu"],
)
def test_torch_bare_hidden_state_continues_in_rnnkit(ours_class, theirs_class, options, path, x):
    torch.manual_seed(0)
    theirs = theirs_class(D, H, num_layers=2, batch_first=True, **options).double()
    ours = ours_class(D, H, num_layers=2, path=path, **options).double()
    ours.load_state_dict(theirs.state_dict())
    whole, h_n = theirs(x)
    first, h = theirs(x[:, :5])
    out = ours(x[:, 5:], h)  # torch's h_0 is a bare tensor
    torch.testing.assert_close(torch.cat([first, out.outputs], 1), whole, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.state.h, h_n, rtol=1e-9, atol=1e-10)
