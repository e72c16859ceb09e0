"""Streamer: stepping x_t by x_t through preallocated buffers equals layer(x) on the whole sequence.

Also reset, a given initial state, refresh after the weights change, eval semantics for the training
regularisers, the boundary errors, that each step returns a new tensor, and that a step into
``out=`` allocates nothing (state buffers stay put). The equality tests run both steps: the C++ one
(path "native", where the kernels build) and the pure-torch one (``native=False``, path "fast");
tests/test_streaming_native.py compares the two directly and covers the fallback.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import rnnkit
from rnnkit.errors import ConfigError, DTypeError, ShapeError
from rnnkit.kernels import stream

D, H, T = 3, 4, 6
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
LAYERS = {"rnn_tanh": rnnkit.RNN, "rnn_relu": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-6, atol=1e-6)}
NATIVE = stream.info().available  # the C++ step built here (else every Streamer takes path "fast")
PATHS = [True, False]  # Streamer(native=...)


def fast_path(native: bool) -> str:
    """The path a Streamer without layer norm takes."""
    return "native" if native and NATIVE else "fast"


def make_layer(kind: str, num_layers: int = 1, dtype=torch.float64, input_size: int = D, **options):
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        options["nonlinearity"] = kind.split("_")[1]
    return LAYERS[kind](input_size, H, num_layers=num_layers, **options).to(dtype).eval()


def sequence(B: int, dtype=torch.float64, input_size: int = D, seed: int = 1):
    return torch.randn(B, T, input_size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def run(streamer, x):
    """Steps x (B, T, D) through the streamer; returns the outputs (B, T, H)."""
    return torch.stack([streamer.step(x_t).clone() for x_t in x.unbind(1)], 1)


def assert_matches(streamer, x, want, tol):
    torch.testing.assert_close(run(streamer, x), want.outputs, **tol)
    got = streamer.state
    assert type(got) is type(want.state)
    for field, a, b in zip(want.state._fields, got, want.state, strict=True):
        assert a.shape == b.shape, field
        torch.testing.assert_close(a, b, msg=lambda m, f=field: f"state.{f}: {m}", **tol)


# ---------------------------------------------------------------- equals the layer


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_steps_equal_the_layer_float64(kind, num_layers, batch_size, native):
    layer = make_layer(kind, num_layers)
    x = sequence(batch_size)
    streamer = rnnkit.Streamer(layer, batch_size, native=native)
    assert streamer.path == fast_path(native)
    assert_matches(streamer, x, layer(x), TOL[torch.float64])


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_steps_equal_the_layer_float32(kind, batch_size, native):
    layer = make_layer(kind, 2, torch.float32)
    x = sequence(batch_size, torch.float32)
    streamer = rnnkit.Streamer(layer, batch_size, native=native)
    assert streamer.path == fast_path(native)
    assert_matches(streamer, x, layer(x), TOL[torch.float32])


@pytest.mark.parametrize(
    "options",
    [
        {"layer_norm": True},
        {"residual": True},
        {"layer_norm": True, "residual": True},
        {"bias": False},
        {"learn_initial_state": True},
    ],
    ids=["layer_norm", "residual", "layer_norm_residual", "no_bias", "learned_initial_state"],
)
@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_steps_equal_the_layer_with_options(kind, options, native):
    # input_size == H, so the residual applies at layer 0 too
    layer = make_layer(kind, 2, input_size=H, **options)
    if options.get("learn_initial_state"):
        with torch.no_grad():
            for cell in layer.cells:
                for name in cell.state_type._fields:
                    getattr(cell, f"initial_{name}").normal_()
    x = sequence(3, input_size=H)
    streamer = rnnkit.Streamer(layer, 3, native=native)
    assert streamer.path == ("cell" if options.get("layer_norm") else fast_path(native))
    assert_matches(streamer, x, layer(x), TOL[torch.float64])


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu"])
def test_training_only_options_behave_as_in_eval(kind, native):
    # recurrent dropout and inter-layer dropout are off, zoneout takes its expectation, even though
    # the layer is left in training mode; the Streamer does not switch the layer's mode
    layer = make_layer(kind, 2, dropout=0.5, recurrent_dropout=0.5, zoneout=0.3).train()
    x = sequence(3)
    streamer = rnnkit.Streamer(layer, 3, native=native)
    assert layer.training
    first = run(streamer, x)
    want = layer.eval()(x)
    torch.testing.assert_close(first, want.outputs, **TOL[torch.float64])
    streamer.reset()
    assert_matches(streamer, x, want, TOL[torch.float64])


# ---------------------------------------------------------------- state


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_reset_starts_again(kind):
    layer = make_layer(kind, 2)
    x = sequence(3)
    streamer = rnnkit.Streamer(layer, 3)
    run(streamer, sequence(3, seed=7))
    streamer.reset()
    for field in streamer.state:
        assert torch.equal(field, torch.zeros(2, 3, H, dtype=torch.float64))
    assert_matches(streamer, x, layer(x), TOL[torch.float64])


@pytest.mark.parametrize("as_torch_tuple", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_a_given_initial_state(kind, as_torch_tuple):
    layer = make_layer(kind, 2)
    x = sequence(3)
    g = torch.Generator().manual_seed(3)
    state = layer.state_type(
        *(torch.randn(2, 3, H, generator=g, dtype=torch.float64) for _ in layer.state_type._fields)
    )
    streamer = rnnkit.Streamer(layer, 3)
    streamer.reset(tuple(state) if as_torch_tuple else state)
    want = layer(x, state)
    assert_matches(streamer, x, want, TOL[torch.float64])
    assert not torch.allclose(want.outputs, layer(x).outputs)  # the given state mattered


def test_state_is_a_copy():
    streamer = rnnkit.Streamer(make_layer("lstm", 2))
    state = streamer.state
    streamer.step(torch.ones(1, D, dtype=torch.float64))
    assert torch.equal(state.h, torch.zeros(2, 1, H, dtype=torch.float64))
    assert not torch.equal(streamer.state.h, state.h)


def test_weights_are_a_snapshot_until_refresh():
    layer = make_layer("gru", 2)
    x = sequence(1)
    streamer = rnnkit.Streamer(layer)
    before = layer(x)
    with torch.no_grad():
        layer.cells[1].weight_hh.mul_(2)
    # the streamer still runs the weights it was built with
    torch.testing.assert_close(run(streamer, x[:, :3]), before.outputs[:, :3], **TOL[torch.float64])
    carried = streamer.state
    streamer.refresh()  # the new weights from here on, from the carried state
    want = layer(x[:, 3:], carried)
    assert_matches(streamer, x[:, 3:], want, TOL[torch.float64])
    assert not torch.allclose(want.outputs, before.outputs[:, 3:])


def test_refresh_follows_a_dtype_change_and_keeps_the_state():
    layer = make_layer("lstm", 2)
    x = sequence(1)
    streamer = rnnkit.Streamer(layer)
    run(streamer, x[:, :3])
    carried = streamer.state
    layer.float()
    streamer.refresh()
    assert streamer.dtype == torch.float32
    for a, b in zip(streamer.state, carried, strict=True):
        assert torch.equal(a, b.float())
    want = layer(x[:, 3:].float(), type(carried)(*(f.float() for f in carried)))
    assert_matches(streamer, x[:, 3:].float(), want, TOL[torch.float32])


# ---------------------------------------------------------------- no allocation per step


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_a_step_reuses_its_buffers(kind, batch_size, native):
    layer = make_layer(kind, 2, zoneout=0.2, residual=True, input_size=H)
    streamer = rnnkit.Streamer(layer, batch_size, native=native)
    x = torch.randn(batch_size, H, dtype=torch.float64)
    y = torch.empty(batch_size, H, dtype=torch.float64)
    assert streamer.step(x, out=y) is y
    pointers = [t.data_ptr() for t in (*streamer._h, *(streamer._c or []))]
    for _ in range(3):
        assert streamer.step(x, out=y) is y
    assert [t.data_ptr() for t in (*streamer._h, *(streamer._c or []))] == pointers
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as fast:
        streamer.step(x, out=y)
    assert [e.name for e in fast.events() if e.cpu_memory_usage > 0] == []


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_collected_steps_equal_the_layer(kind):
    # the README's pattern: each step returns a new tensor, so a list keeps every y_t
    layer = make_layer(kind, 2)
    x = sequence(3)
    streamer = rnnkit.Streamer(layer, 3)
    ys = [streamer.step(x_t) for x_t in x.unbind(1)]
    torch.testing.assert_close(torch.stack(ys, 1), layer(x).outputs, **TOL[torch.float64])
    assert not ys[-1].is_inference()  # an ordinary tensor, usable outside inference mode


def test_out_is_filled_and_equals_the_new_tensor():
    layer = make_layer("lstm", 2)
    x = sequence(1)
    first, second = rnnkit.Streamer(layer), rnnkit.Streamer(layer)
    y = torch.full((1, H), float("nan"), dtype=torch.float64)
    for x_t in x.unbind(1):
        assert first.step(x_t, out=y) is y
        torch.testing.assert_close(y, second.step(x_t), rtol=0, atol=0)


def test_the_allocation_check_can_fail():
    # the same probe sees the cell path's allocations, so the check above is not vacuous
    streamer = rnnkit.Streamer(make_layer("lstm", 1, layer_norm=True))
    x = torch.randn(1, D, dtype=torch.float64)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as slow:
        streamer.step(x)
    assert [e.name for e in slow.events() if e.cpu_memory_usage > 0]


# ---------------------------------------------------------------- errors


def test_bidirectional_is_refused():
    with pytest.raises(ConfigError, match=r"unidirectional layer.*cannot read the\s+future"):
        rnnkit.Streamer(rnnkit.LSTM(D, H, bidirectional=True))


def test_only_rnnkit_layers():
    with pytest.raises(ConfigError, match=r"takes an rnnkit.RNN, LSTM or GRU, got LSTM"):
        rnnkit.Streamer(torch.nn.LSTM(D, H))


@pytest.mark.parametrize("batch_size", [0, 1.0, None])
def test_batch_size_must_be_a_positive_int(batch_size):
    with pytest.raises(ConfigError, match=r"batch_size must be a positive int"):
        rnnkit.Streamer(make_layer("gru"), batch_size)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.zeros(D, dtype=torch.float64), ShapeError, r"\(B, D\).*unsqueeze\(0\)"),
        (torch.zeros(2, D + 1, dtype=torch.float64), ShapeError, r"feature size must be 3"),
        (torch.zeros(2, D), DTypeError, r"input dtype torch.float32 does not match"),
        (torch.zeros(3, D, dtype=torch.float64), ShapeError, r"built with; got \(3, 3\).*batch_size=3"),
        ([0.0] * D, ShapeError, r"must be a torch.Tensor, got list"),
    ],
    ids=["no_batch", "features", "dtype", "batch", "not_a_tensor"],
)
def test_bad_steps_are_refused(x, error, match):
    streamer = rnnkit.Streamer(make_layer("lstm"), batch_size=2)
    with pytest.raises(error, match=match):
        streamer.step(x)


@pytest.mark.parametrize(
    "out, error, match",
    [
        (
            torch.zeros(2, H + 1, dtype=torch.float64),
            ShapeError,
            r"out must be .*\(B, H\) = \(2, 4\), got \(2, 5\)",
        ),
        ("y", ShapeError, r"out must be a tensor of shape .*got str"),
        (torch.zeros(2, H), DTypeError, r"out must be torch.float64 on cpu.*got torch.float32.*torch.empty"),
    ],
    ids=["shape", "not_a_tensor", "dtype"],
)
def test_a_bad_out_is_refused(out, error, match):
    streamer = rnnkit.Streamer(make_layer("lstm"), batch_size=2)
    with pytest.raises(error, match=match):
        streamer.step(torch.zeros(2, D, dtype=torch.float64), out=out)


def test_check_false_skips_the_per_step_check():
    layer = make_layer("gru")
    x = sequence(1)
    streamer = rnnkit.Streamer(layer, check=False)
    torch.testing.assert_close(run(streamer, x), layer(x).outputs, **TOL[torch.float64])


def test_a_bad_state_is_refused():
    streamer = rnnkit.Streamer(make_layer("lstm", 2), batch_size=3)
    with pytest.raises(ShapeError, match=r"state.h must have shape \(2, 3, 4\), got \(2, 1, 4\)"):
        streamer.reset((torch.zeros(2, 1, H), torch.zeros(2, 1, H)))
