"""The C++ LSTM loop (csrc/lstm_loop.cpp) equals the pure-torch cell loop and the reference maths.

rnnkit's LSTMCell on the cell path runs through the compiled loop when it builds; ``RNNKIT_NO_EXTENSION=1``
gives the pure-torch loop of ``Recurrent._scan``. Each test runs both and compares outputs, final states
and the gradients of the input, the initial state and every parameter in float64 to 1e-10. The first
test of a session compiles the extension (once per machine; later sessions load the cached library).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rnnkit
import rnnkit.layers.recurrent as recurrent
from rnnkit.cells.base import LSTMState
from rnnkit.errors import DTypeError, ShapeError
from rnnkit.functional import extension
from rnnkit.functional.lstm_loop import lstm_loop, lstm_loop_info
from rnnkit.functional.steps import lstm_step, lstm_update

F64 = torch.float64
B, T, D, H = 3, 6, 4, 5
LENGTHS = [6, 4, 1]
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module", autouse=True)
def built():
    """Build (or load) the extension once; skip only where this machine cannot compile at all."""
    with environment(None):
        info = lstm_loop_info()
    if not info.available and info.reason.startswith(("no C++ compiler", "ninja")):
        pytest.skip(f"the C++ loop cannot be built here: {info.reason}")
    assert info.available, info.reason
    return info


@contextlib.contextmanager
def environment(value: str | None):
    """RNNKIT_NO_EXTENSION set to ``value`` (None: unset) inside the block."""
    old = os.environ.pop(extension.DISABLE, None)
    if value is not None:
        os.environ[extension.DISABLE] = value
    try:
        yield
    finally:
        os.environ.pop(extension.DISABLE, None)
        if old is not None:
            os.environ[extension.DISABLE] = old


@pytest.fixture
def compiled_calls(monkeypatch):
    """Counts the sequences Recurrent ran through the C++ loop."""
    calls = []

    def spy(*args):
        result = compiled_scan(*args)
        calls.append(result is not None)
        return result

    compiled_scan = recurrent.compiled_scan
    monkeypatch.setattr(recurrent, "compiled_scan", spy)
    return calls


def randomise(module: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Nontrivial layer-norm gains and biases, so a dropped gamma or beta shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "ln_" in name or "initial_" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype))
    return module


def run(layer, x, state=None, lengths=None, compiled=True, seed=0):
    """Outputs, final state fields and the gradients of x, the initial state and every parameter."""
    x = x.detach().clone().requires_grad_()
    state = None if state is None else tuple(f.detach().clone().requires_grad_() for f in state)
    with environment(None if compiled else "1"):
        torch.manual_seed(seed)
        out = layer(x, state, lengths)
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (out.outputs, *out.state)]
    loss = sum((w * t).sum() for w, t in zip(weights, (out.outputs, *out.state), strict=True))
    leaves = [x, *(state or ()), *layer.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [out.outputs, *out.state, *(g for g in grads if g is not None)]


def assert_paths_agree(layer, x, state=None, lengths=None, seed=0, **tol):
    got = run(layer, x, state, lengths, compiled=True, seed=seed)
    want = run(layer, x, state, lengths, compiled=False, seed=seed)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **(tol or TOL))


CONFIGS = {"L1": dict(num_layers=1), "L2-bi": dict(num_layers=2, bidirectional=True)}


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_compiled_loop_equals_pure_torch_loop(layer_norm, config, lengths, compiled_calls):
    torch.manual_seed(0)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=layer_norm, path="cell", **CONFIGS[config]).double())
    K = layer.num_states
    state = (torch.randn(K, B, H, dtype=F64), torch.randn(K, B, H, dtype=F64))
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), state, lengths)
    n = layer.num_states  # one Recurrent per layer and direction, on each path
    assert compiled_calls == [True] * n + [False] * n


def test_learned_initial_state_and_no_bias(compiled_calls):
    torch.manual_seed(1)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=True, learn_initial_state=True, bias=False).double())
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), lengths=LENGTHS)
    assert any(compiled_calls)


def steps_reference(cell, x, h, c, lengths):
    """The spec: functional/steps.py one step at a time, layer norm written out (Ba et al. 2016)."""
    outputs = []
    for t, x_t in enumerate(x.unbind(1)):
        if cell.ln_hh is None:
            new_h, new_c = lstm_step(x_t, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        else:
            gx = F.layer_norm(x_t @ cell.weight_ih.T, (4 * H,), cell.ln_ih.weight) + cell.bias_ih
            gh = F.layer_norm(h @ cell.weight_hh.T, (4 * H,), cell.ln_hh.weight) + cell.bias_hh
            new_h, new_c = lstm_update(gx, gh, c, cell.ln_c)
        real = (t < lengths)[:, None]  # (B, 1)
        h, c = torch.where(real, new_h, h), torch.where(real, new_c, c)
        outputs.append(new_h * real)
    return torch.stack(outputs, 1), h, c


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_compiled_loop_equals_steps_reference(layer_norm, compiled_calls):
    torch.manual_seed(2)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=layer_norm, path="cell").double())
    cell = layer.cells[0]
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    h0, c0 = (torch.randn(B, H, dtype=F64, requires_grad=True) for _ in range(2))
    leaves = [x, h0, c0, *layer.parameters()]
    out = layer(x, (h0[None], c0[None]), LENGTHS)
    want = steps_reference(cell, x, h0, c0, torch.tensor(LENGTHS))
    got = (out.outputs, out.state.h[0], out.state.c[0])
    assert compiled_calls == [True]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    g = torch.Generator().manual_seed(5)
    weights = [torch.randn(t.shape, generator=g, dtype=F64) for t in want]
    grads_got = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, got, strict=True)), leaves)
    grads_want = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, want, strict=True)), leaves)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_padded_steps_keep_the_state_and_give_zero_outputs():
    torch.manual_seed(3)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=True, zoneout=0.3).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    out = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], **TOL)
        assert torch.all(out.outputs[b, n:] == 0)
        torch.testing.assert_close(out.state.h[:, b], alone.state.h[:, 0], **TOL)
        torch.testing.assert_close(out.state.c[:, b], alone.state.c[:, 0], **TOL)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_dropout_and_zoneout_in_training_draw_the_same_masks(layer_norm, compiled_calls):
    torch.manual_seed(4)
    options = dict(recurrent_dropout=0.4, zoneout=0.3, layer_norm=layer_norm)
    layer = randomise(rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, **options).double().train())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=11)
    assert any(compiled_calls)
    # the masks are random: another seed gives other numbers
    first, other = run(layer, x, lengths=LENGTHS, seed=11), run(layer, x, lengths=LENGTHS, seed=12)
    assert not torch.allclose(first[0], other[0])


def test_training_mode_without_grad_draws_the_same_masks(compiled_calls):
    torch.manual_seed(12)
    layer = randomise(rnnkit.LSTM(D, H, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).double().train())
    x = torch.randn(B, T, D, dtype=F64)
    with torch.no_grad():
        got, want = [], []
        for outputs, compiled in ((got, None), (want, "1")):
            with environment(compiled):
                torch.manual_seed(5)
                out = layer(x, lengths=LENGTHS)
            outputs.extend((out.outputs, *out.state))
    assert compiled_calls == [True, False]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_eval_mode_uses_the_expectations():
    torch.manual_seed(5)
    layer = randomise(rnnkit.LSTM(D, H, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=1)
    torch.testing.assert_close(run(layer, x, seed=1)[0], run(layer, x, seed=2)[0], rtol=0, atol=0)


def test_inference_mode_equals_the_pure_torch_loop(compiled_calls):
    torch.manual_seed(6)
    layer = randomise(rnnkit.LSTM(D, H, num_layers=2, layer_norm=True, zoneout=0.2).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    with torch.inference_mode():
        got = layer(x, lengths=LENGTHS)
        with environment("1"):
            want = layer(x, lengths=LENGTHS)
    assert compiled_calls == [True, True, False, False]
    for a, b in zip((got.outputs, *got.state), (want.outputs, *want.state), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_two_threads_split_the_batch_between_them(dtype):
    """Conftest runs tests on one thread; the loop gives each thread a block of rows of its own."""
    torch.manual_seed(7)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=True, recurrent_dropout=0.3, zoneout=0.2).to(dtype))
    x = torch.randn(16, T, D, dtype=dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tol = TOL if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
        assert_paths_agree(layer, x, lengths=torch.randint(1, T + 1, (16,)), seed=3, **tol)
    finally:
        torch.set_num_threads(threads)


def test_float32_agrees_with_the_pure_torch_loop(compiled_calls):
    torch.manual_seed(8)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=True, num_layers=2))
    x = 3 * torch.randn(B, 20, D)
    assert_paths_agree(layer, x, lengths=[20, 11, 3], rtol=1e-4, atol=1e-5)
    assert any(compiled_calls)


@pytest.mark.parametrize("norms", ["none", "ih", "hh", "all"])
def test_gradcheck_first_derivatives(norms):
    """Every differentiable input of the loop, with lengths, a dropout mask and zoneout masks."""
    torch.manual_seed(9)
    t, b, d, h = 3, 2, 2, 2

    def leaf(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    inputs = dict(x=leaf(t, b, d), weight_ih=leaf(4 * h, d), h0=leaf(b, h), c0=leaf(b, h))
    inputs.update(weight_hh=leaf(4 * h, h), bias=leaf(4 * h))
    if norms in ("ih", "all"):
        inputs["ln_ih_weight"] = leaf(4 * h)
    if norms in ("hh", "all"):
        inputs["ln_hh_weight"] = leaf(4 * h)
    if norms == "all":
        inputs.update(ln_c_weight=leaf(h), ln_c_bias=leaf(h))
    masks = dict(
        dropout_mask=torch.bernoulli(torch.full((b, h), 0.7, dtype=F64)) / 0.7,
        zoneout_masks=torch.bernoulli(torch.full((t, 2, b, h), 0.3, dtype=F64)),
        lengths=torch.tensor([3, 2]),
    )

    def fn(*values):
        return lstm_loop(**dict(zip(inputs, values, strict=True)), **masks)  # (outputs, h_T, c_T)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()))


def test_double_backward_is_refused_with_a_pointer_to_the_fallback():
    layer = rnnkit.LSTM(D, H, layer_norm=True).double()
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"first derivatives only.*RNNKIT_NO_EXTENSION=1"):
        torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    with environment("1"):
        (grad,) = torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    grad.sum().backward()


# --- the fallback ---------------------------------------------------------------------------------


def test_environment_switch_runs_the_pure_torch_loop(compiled_calls):
    layer = rnnkit.LSTM(D, H, layer_norm=True).double()
    x = torch.randn(B, T, D, dtype=F64)
    with environment("1"):
        layer(x)
    with environment("0"):
        layer(x)
    assert compiled_calls == [False, True]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_the_pure_torch_loop(dtype, compiled_calls):
    torch.manual_seed(10)
    layer = rnnkit.LSTM(D, H, layer_norm=True)
    x = torch.randn(B, T, D)
    want = layer(x, lengths=LENGTHS).outputs
    got = layer.to(dtype)(x.to(dtype), lengths=LENGTHS).outputs
    assert compiled_calls == [True, False]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)


def test_autocast_runs_the_pure_torch_loop(compiled_calls):
    layer = rnnkit.LSTM(D, H, layer_norm=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(B, T, D))
    assert compiled_calls == [False] and out.outputs.shape == (B, T, H)


def test_lstm_loop_refuses_arrays_it_would_misread():
    x, w_ih, h0, c0 = torch.randn(T, B, D), torch.randn(4 * H, D), torch.randn(B, H), torch.randn(B, H)
    w_hh = torch.randn(4 * H, H)
    with pytest.raises(
        ShapeError, match=r"c0 must be \(3, 5\) for x \(6, 3, 4\) and h0 \(3, 5\), got \(3, 4\)"
    ):
        lstm_loop(x, w_ih, h0, c0[:, :4], w_hh)
    with pytest.raises(
        DTypeError, match=r"weight_hh must be a torch\.float32 CPU tensor, got torch\.float64"
    ):
        lstm_loop(x, w_ih, h0, c0, w_hh.double())


def test_a_subclass_of_lstm_cell_keeps_the_generic_loop(compiled_calls):
    class Halved(rnnkit.LSTMCell):
        def update(self, gx, gh, state):
            h, c = super().update(gx, gh, state)
            return LSTMState(h / 2, c)

    layer = rnnkit.Recurrent(Halved(D, H).double())
    layer(torch.randn(B, T, D, dtype=F64))
    assert compiled_calls == [False]


def test_a_failed_build_warns_once_and_names_why():
    with pytest.warns(UserWarning, match=r"could not build .*no_such_loop.*missing"):
        info = extension.load("no_such_loop")
    assert not info.available and "missing" in info.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert extension.load("no_such_loop") is info  # cached: no second warning


def test_a_compiler_error_is_named_after_every_variant_failed(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    variants = [("wide", ["-fno-such-flag-1"]), ("narrow", ["-fno-such-flag-2"])]
    monkeypatch.setattr(extension, "_variants", lambda: variants)
    with pytest.warns(UserWarning, match=r"'rnnkit_lstm_loop_wide' \(the build failed: .*-fno-such-flag-1"):
        info = extension._build("lstm_loop")
    assert not info.available and "-fno-such-flag-1" in info.reason


def test_info_reports_the_build(built):
    assert built.available and built.name.startswith("rnnkit_lstm_loop_")
    assert built.seconds > 0 and built.path


@pytest.mark.skipif(
    extension.fcntl is None, reason="the build lock is POSIX's flock; Windows has torch's alone"
)
def test_a_build_killed_midway_does_not_block_later_builds(monkeypatch, tmp_path):
    """torch's plain lock file, left by a killed build, would make every later build wait forever."""
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    name, flags = extension._variants()[-1][0], extension._variants()[-1][1]
    folder = extension.cache_dir() / f"rnnkit_lstm_loop_{name}"
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what a build killed between torch's acquire and release leaves
    result = []
    build = threading.Thread(
        target=lambda: result.append(
            extension._compile(f"rnnkit_lstm_loop_{name}", extension.SOURCES / "lstm_loop.cpp", flags)
        ),
        daemon=True,  # a regression waits forever: leave it behind rather than hang the suite
    )
    build.start()
    build.join(timeout=300)
    assert result, "the build still waits for the stale lock file after 300 s"
    info = result[0]
    assert info.available and info.compiled and Path(info.library).is_file()
    assert not (folder / "lock").exists()
