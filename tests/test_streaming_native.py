"""The Streamer's C++ step (rnnkit.kernels.stream) equals its pure-torch step and torch.nn.

Shapes with several blocks of hidden units and a partial last block (H = 37 and 70: blocks of 16
to 64 units, half as many in float64), 1 and 2 threads, batch 1, 3 and 5 (the kernel takes up to 4
rows per pass over a block's weights, so 5 has a full pass and a tail), 1 and 2 layers, residuals
and zoneout; the state carried across calls equals the one-shot run; the weight packing is a pure
permutation; the fallback (``RNNKIT_NO_EXTENSION=1``, no compiler, a struct layout mismatch) gives
the pure-torch step with the same numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import ConfigError
from rnnkit.kernels import binding, build, stream

D, T = 5, 7
LAYERS = {"rnn_tanh": rnnkit.RNN, "rnn_relu": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}
TORCH = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6)}


@pytest.fixture(scope="module", autouse=True)
def native():
    """Skips where this machine cannot build the C++ step."""
    info = stream.info()
    if not info.available and info.reason.startswith(("no C++ compiler", "ninja")):
        pytest.skip(f"the C++ step cannot be built here: {info.reason}")
    assert info.available, info.reason


def make_layer(kind, H=37, num_layers=2, dtype=torch.float32, input_size=D, **options):
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        options["nonlinearity"] = kind.split("_")[1]
    return LAYERS[kind](input_size, H, num_layers=num_layers, **options).to(dtype).eval()


def sequence(B, dtype=torch.float32, input_size=D, steps=T):
    return torch.randn(B, steps, input_size, generator=torch.Generator().manual_seed(1), dtype=dtype)


def run(streamer, x):
    """x (B, T, D) stepped one x_t at a time -> outputs (B, T, H)."""
    return torch.stack([streamer.step(x_t) for x_t in x.unbind(1)], 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 3, 5])  # 5: a pass of several rows at once, and a tail
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_native_equals_the_torch_step_and_torch_nn(kind, num_layers, batch_size, threads, dtype):
    layer = make_layer(kind, 70, num_layers, dtype)
    x = sequence(batch_size, dtype)
    native = rnnkit.Streamer(layer, batch_size, threads=threads)
    fast = rnnkit.Streamer(layer, batch_size, native=False)
    assert (native.path, fast.path) == ("native", "fast")
    got, want = run(native, x), run(fast, x)
    torch.testing.assert_close(got, want, **TOL[dtype])
    reference = TORCH[kind](D, 70, num_layers, batch_first=True, **_torch_options(kind)).to(dtype)
    reference.load_state_dict(layer.state_dict())
    outputs, final = reference(x)
    torch.testing.assert_close(got, outputs, **TOL[dtype])
    for carried, expected in zip(native.state, final if kind == "lstm" else (final,), strict=True):
        torch.testing.assert_close(carried, expected, **TOL[dtype])


def _torch_options(kind):
    return {"nonlinearity": kind.split("_")[1]} if kind.startswith("rnn") else {}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_threads_split_blocks_without_changing_a_bit(kind):
    layer = make_layer(kind, 70)
    x = sequence(5)
    one, two = (rnnkit.Streamer(layer, 5, threads=n) for n in (1, 2))
    assert torch.equal(run(one, x), run(two, x))


@pytest.mark.parametrize(
    "options",
    [{"residual": True}, {"zoneout": 0.3}, {"residual": True, "zoneout": 0.2}, {"bias": False}],
    ids=["residual", "zoneout", "residual_zoneout", "no_bias"],
)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_native_with_options(kind, options):
    # input_size == H: the residual applies from layer 0 on
    layer = make_layer(kind, 37, 2, input_size=37, **options)
    x = sequence(3, input_size=37)
    native, fast = rnnkit.Streamer(layer, 3, threads=2), rnnkit.Streamer(layer, 3, native=False)
    assert native.path == "native"
    want = layer(x)
    got = run(native, x)
    torch.testing.assert_close(got, run(fast, x), **TOL[torch.float32])
    torch.testing.assert_close(got, want.outputs, **TOL[torch.float32])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_carried_state_equals_the_one_shot_run(kind):
    layer = make_layer(kind, 70, 2)
    x = sequence(3, steps=12)
    streamer = rnnkit.Streamer(layer, 3)
    first = run(streamer, x[:, :5])
    carried = streamer.state
    want_first = layer(x[:, :5])
    for a, b in zip(carried, want_first.state, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    # a new Streamer started from the carried state continues as the first one does
    other = rnnkit.Streamer(layer, 3)
    other.reset(carried)
    rest, rest_other = run(streamer, x[:, 5:]), run(other, x[:, 5:])
    assert torch.equal(rest, rest_other)
    whole = layer(x)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole.outputs, **TOL[torch.float32])
    for a, b in zip(streamer.state, whole.state, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_inputs_and_outputs_that_are_not_contiguous_go_through_a_copy():
    layer = make_layer("lstm", 37, 2)
    x = sequence(3)
    streamer = rnnkit.Streamer(layer, 3)
    wide = torch.zeros(3, 2 * 37)
    ys = []
    for x_t in x.unbind(1):  # each x_t (3, D) a strided view of x
        assert not x_t.is_contiguous()
        out = wide[:, ::2]  # (3, H), not contiguous
        assert streamer.step(x_t, out=out) is out
        ys.append(out.clone())
    torch.testing.assert_close(torch.stack(ys, 1), layer(x).outputs, **TOL[torch.float32])


def test_pack_is_a_permutation_of_the_rows():
    G, H, K, J = 4, 37, 9, 16
    w_ih, w_hh = torch.randn(G * H, 3), torch.randn(G * H, K - 3)
    packed = stream.pack(w_ih, w_hh, G, J)  # (nb, K, G, J)
    assert packed.shape == (3, K, G, J)
    w = torch.cat([w_ih, w_hh], 1).view(G, H, K)
    for block, unit, gate in [(0, 0, 0), (1, 3, 2), (2, 4, 3)]:
        j = block * J + unit
        assert torch.equal(packed[block, :, gate, unit], w[gate, j])
    assert torch.equal(packed[2, :, :, 5:], torch.zeros(K, G, J - 5))  # units past H: zero rows
    bias = torch.arange(G * H, dtype=torch.float32)
    assert torch.equal(stream.pack_bias(bias, G, J)[1, 2, 3], bias[2 * H + J + 3])


def test_the_layout_check_names_the_field():
    c_layout = stream._handle().rnnkit_stream_layout().decode()
    stream.check_layout("rnnkit_x", c_layout)  # the built library agrees with the mirrors
    moved = c_layout.replace("zoneout@", "zoneout_p@")
    with pytest.raises(binding.LayoutError, match=r"struct Layer, field 8: zoneout@\d+\+8 in C, zoneout_p@"):
        stream.check_layout("rnnkit_x", c_layout, moved)


# ---------------------------------------------------------------- the fallback


def check_fallback(layer, x):
    streamer = rnnkit.Streamer(layer, 3)
    assert streamer.path == "fast"
    torch.testing.assert_close(run(streamer, x), layer(x).outputs, **TOL[torch.float32])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_no_extension_gives_the_torch_step(kind, monkeypatch):
    monkeypatch.setenv(build.DISABLE, "1")
    check_fallback(make_layer(kind), sequence(3))


def test_no_compiler_warns_and_gives_the_torch_step(monkeypatch):
    monkeypatch.setattr(build, "_loaded", {})  # build afresh, as a new process would
    monkeypatch.setattr(stream, "_opened", [])
    monkeypatch.setattr(build, "_why_not", lambda source: "no C++ compiler: 'c++' is not on PATH")
    with pytest.warns(UserWarning, match=r"could not build .*stream_step.*no C\+\+ compiler"):
        check_fallback(make_layer("lstm"), sequence(3))


def test_a_layout_mismatch_warns_and_gives_the_torch_step(monkeypatch):
    expected = stream.expected_layout()
    monkeypatch.setattr(stream, "_opened", [])  # open the library afresh, under the patched mirror
    monkeypatch.setattr(stream, "expected_layout", lambda: expected + " extra@80+8")
    with pytest.warns(UserWarning, match=r"cannot use its C\+\+ streaming step .*differ.*extra"):
        check_fallback(make_layer("gru"), sequence(3))


def test_layer_norm_keeps_the_cell_path():
    assert rnnkit.Streamer(make_layer("lstm", layer_norm=True)).path == "cell"


def test_a_wrong_kind_is_refused():
    with pytest.raises(ConfigError, match=r"kind must be one of .*'lstm'.*got 'lstmm'"):
        stream.compiled_step("lstmm", [], torch.zeros(1, 1))


@pytest.mark.parametrize("threads", [0, 1.5])
def test_threads_must_be_a_positive_int(threads):
    with pytest.raises(ConfigError, match=r"threads must be a positive int or None, got"):
        rnnkit.Streamer(make_layer("gru"), threads=threads)


def test_an_error_in_cpp_becomes_a_runtime_error():
    streamer = rnnkit.Streamer(make_layer("gru"))
    streamer._native._args.kind = 99  # what only a mismatched build could pass
    with pytest.raises(RuntimeError, match=r"C\+\+ streaming step failed: unknown cell kind 99"):
        streamer.step(torch.zeros(1, D))
