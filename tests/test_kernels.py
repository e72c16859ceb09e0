"""The C++ time loops (src/rnnkit/kernels) equal the pure-torch cell loop, the reference maths and torch.nn.

rnnkit's LSTMCell, GRUCell and RNNCell (tanh and relu) on the cell path run through the compiled loop
when it builds; ``RNNKIT_NO_EXTENSION=1`` gives the pure-torch loop of ``Recurrent._scan``. Each test
runs both and compares outputs, final states and the gradients of the input, the initial state and
every parameter in float64 to 1e-10, for every cell kind. The first test of a kind in a session
compiles its library (once per machine; later sessions load the cached library).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import threading
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnkit
import rnnkit.layers.recurrent as recurrent
from rnnkit.errors import ConfigError, DTypeError, ShapeError
from rnnkit.functional.steps import elman_step, elman_update, gru_step, gru_update, lstm_step, lstm_update
from rnnkit.kernels import KINDS, binding, build, loop_info, time_loop

F64 = torch.float64
B, T, D, H = 3, 6, 4, 5
LENGTHS = [6, 4, 1]
TOL = dict(rtol=1e-10, atol=1e-10)

# kind -> (rnnkit layer, rnnkit cell, torch.nn layer, options all three take)
LAYERS = {
    "lstm": (rnnkit.LSTM, rnnkit.LSTMCell, nn.LSTM, {}),
    "gru": (rnnkit.GRU, rnnkit.GRUCell, nn.GRU, {}),
    "rnn_tanh": (rnnkit.RNN, rnnkit.RNNCell, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, rnnkit.RNNCell, nn.RNN, {"nonlinearity": "relu"}),
}


def cannot_compile(info: build.ExtensionInfo) -> bool:
    return not info.available and info.reason.startswith(("no C++ compiler", "ninja"))


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request):
    """Each cell kind, its library built (or loaded) once; skip only where this machine cannot compile."""
    with environment(None):
        info = loop_info(request.param)
    if cannot_compile(info):
        pytest.skip(f"the C++ loop cannot be built here: {info.reason}")
    assert info.available, info.reason
    return request.param


@pytest.fixture
def compiler():
    """Skips a build test where this machine has no compiler or ninja."""
    reason = build._why_not(build.SOURCES / "lstm_loop.cpp")
    if reason is not None:
        pytest.skip(f"no build here: {reason}")


@contextlib.contextmanager
def environment(value: str | None):
    """RNNKIT_NO_EXTENSION set to ``value`` (None: unset) inside the block."""
    old = os.environ.pop(build.DISABLE, None)
    if value is not None:
        os.environ[build.DISABLE] = value
    try:
        yield
    finally:
        os.environ.pop(build.DISABLE, None)
        if old is not None:
            os.environ[build.DISABLE] = old


@pytest.fixture
def compiled_calls(monkeypatch):
    """Counts the sequences Recurrent ran through a C++ loop: True per compiled run, False per fallback."""
    calls = []

    def spy(*args):
        result = compiled_scan(*args)
        calls.append(result is not None)
        return result

    compiled_scan = recurrent.compiled_scan
    monkeypatch.setattr(recurrent, "compiled_scan", spy)
    return calls


def layer_of(kind: str, **options) -> nn.Module:
    """rnnkit's layer of this kind, float64, on the cell path."""
    layer, _, _, extra = LAYERS[kind]
    return layer(D, H, **extra, path="cell", **options).double()


def cell_of(kind: str, **options) -> nn.Module:
    _, cell, _, extra = LAYERS[kind]
    return cell(D, H, **extra, **options).double()


def fields(kind: str) -> int:
    return len(KINDS[kind].state)


def gates(kind: str) -> int:
    return KINDS[kind].gates * H


def randomise(module: nn.Module, seed: int = 3) -> nn.Module:
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
    g = torch.Generator().manual_seed(7)  # the same weights in every dtype
    weights = [torch.randn(t.shape, generator=g, dtype=F64).to(t.dtype) for t in (out.outputs, *out.state)]
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
def test_compiled_loop_equals_pure_torch_loop(kind, layer_norm, config, lengths, compiled_calls):
    torch.manual_seed(0)
    layer = randomise(layer_of(kind, layer_norm=layer_norm, **CONFIGS[config]))
    state = tuple(torch.randn(layer.num_states, B, H, dtype=F64) for _ in range(fields(kind)))
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), state, lengths)
    n = layer.num_states  # one Recurrent per layer and direction, on each path
    assert compiled_calls == [True] * n + [False] * n


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_learned_initial_state_and_no_bias(kind, layer_norm, compiled_calls):
    torch.manual_seed(1)
    layer = randomise(layer_of(kind, layer_norm=layer_norm, learn_initial_state=True, bias=False))
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), lengths=LENGTHS)
    assert compiled_calls == [True, False]


def test_layer_norms_with_a_bias_fold_it_into_the_gate_biases(kind, compiled_calls):
    """A LayerNorm's beta adds where the bias beside it does (for a GRU: b_hh's inside the reset gate)."""
    torch.manual_seed(2)
    layer = layer_of(kind, layer_norm=True)
    cell = layer.cells[0]
    cell.ln_ih, cell.ln_hh = nn.LayerNorm(gates(kind)).double(), nn.LayerNorm(gates(kind)).double()
    randomise(layer)
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), lengths=LENGTHS)
    assert compiled_calls == [True, False]


def test_a_layer_norm_without_a_gain_keeps_the_generic_loop(kind, compiled_calls):
    layer = layer_of(kind, layer_norm=True)
    layer.cells[0].ln_hh = nn.LayerNorm(gates(kind), elementwise_affine=False).double()
    layer(torch.randn(B, T, D, dtype=F64))
    assert compiled_calls == [False]


def reference_step(kind, cell, x_t, state):
    """One step of the spec, functional/steps.py, layer norm written out (Ba et al. 2016)."""
    if cell.ln_hh is None:  # the *_step functions, from raw weights
        weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        if kind == "lstm":
            return lstm_step(x_t, tuple(state), *weights)
        if kind == "gru":
            return (gru_step(x_t, state[0], *weights),)
        return (elman_step(x_t, state[0], *weights, nonlinearity=cell.nonlinearity),)
    gx = F.layer_norm(x_t @ cell.weight_ih.T, (gates(kind),), cell.ln_ih.weight) + cell.bias_ih
    gh = F.layer_norm(state[0] @ cell.weight_hh.T, (gates(kind),), cell.ln_hh.weight) + cell.bias_hh
    if kind == "lstm":
        return lstm_update(gx, gh, state[1], cell.ln_c)
    if kind == "gru":
        return (gru_update(gx, gh, state[0]),)
    return (elman_update(gx, gh, cell.nonlinearity),)


def steps_reference(kind, cell, x, state, lengths):
    """The spec one step at a time: outputs (B, T, H) and the final state's fields."""
    outputs, state = [], list(state)
    for t, x_t in enumerate(x.unbind(1)):
        new = reference_step(kind, cell, x_t, state)
        real = (t < lengths)[:, None]  # (B, 1)
        state = [torch.where(real, n, s) for n, s in zip(new, state, strict=True)]
        outputs.append(new[0] * real)
    return torch.stack(outputs, 1), *state


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_compiled_loop_equals_steps_reference(kind, layer_norm, compiled_calls):
    torch.manual_seed(2)
    layer = randomise(layer_of(kind, layer_norm=layer_norm))
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    state = [torch.randn(B, H, dtype=F64, requires_grad=True) for _ in range(fields(kind))]
    leaves = [x, *state, *layer.parameters()]
    out = layer(x, tuple(s[None] for s in state), LENGTHS)
    want = steps_reference(kind, layer.cells[0], x, state, torch.tensor(LENGTHS))
    got = (out.outputs, *(f[0] for f in out.state))
    assert compiled_calls == [True]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    g = torch.Generator().manual_seed(5)
    weights = [torch.randn(t.shape, generator=g, dtype=F64) for t in want]
    grads_got = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, got, strict=True)), leaves)
    grads_want = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, want, strict=True)), leaves)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
def test_compiled_loop_equals_torch_nn(kind, dtype, compiled_calls):
    """Weights from torch.nn.LSTM/GRU/RNN through load_state_dict; outputs, final states, all gradients."""
    torch.manual_seed(3)
    ours_class, _, theirs_class, extra = LAYERS[kind]
    theirs = theirs_class(D, H, num_layers=2, bidirectional=True, batch_first=True, **extra).to(dtype)
    ours = ours_class(D, H, num_layers=2, bidirectional=True, path="cell", **extra).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(B, T, D, dtype=dtype)
    state = tuple(torch.randn(4, B, H, dtype=dtype) for _ in range(fields(kind)))  # (L*K, B, H) each
    results = []
    for module in (ours, theirs):
        x_, state_ = x.clone().requires_grad_(), tuple(f.clone().requires_grad_() for f in state)
        bare = module is theirs and kind != "lstm"  # torch.nn.GRU/RNN take and give h alone
        outputs, final = module(x_, state_[0] if bare else state_)
        final = (final,) if bare else tuple(final)
        loss = outputs.pow(2).sum() + sum(f.sin().sum() for f in final)
        grads = torch.autograd.grad(loss, [x_, *state_, *module.parameters()])  # the same order
        results.append((outputs, *final, *grads))
    assert compiled_calls == [True] * 4  # 2 layers x 2 directions
    tol = TOL if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_padded_steps_keep_the_state_and_give_zero_outputs(kind, compiled_calls):
    torch.manual_seed(3)
    layer = randomise(layer_of(kind, layer_norm=True, zoneout=0.3).eval())
    x = torch.randn(B, T, D, dtype=F64)
    out = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], **TOL)
        assert torch.all(out.outputs[b, n:] == 0)
        for field, field_alone in zip(out.state, alone.state, strict=True):
            torch.testing.assert_close(field[:, b], field_alone[:, 0], **TOL)
    assert compiled_calls == [True] * (1 + len(LENGTHS))


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_dropout_and_zoneout_in_training_draw_the_same_masks(kind, layer_norm, compiled_calls):
    torch.manual_seed(4)
    options = dict(recurrent_dropout=0.4, zoneout=0.3, layer_norm=layer_norm)
    layer = randomise(layer_of(kind, num_layers=2, bidirectional=True, **options).train())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=11)
    assert compiled_calls == [True] * 4 + [False] * 4
    # the masks are random: another seed gives other numbers
    first, other = run(layer, x, lengths=LENGTHS, seed=11), run(layer, x, lengths=LENGTHS, seed=12)
    assert not torch.allclose(first[0], other[0])


def test_training_mode_without_grad_draws_the_same_masks(kind, compiled_calls):
    torch.manual_seed(12)
    layer = randomise(layer_of(kind, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).train())
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


def test_eval_mode_uses_the_expectations(kind, compiled_calls):
    torch.manual_seed(5)
    layer = randomise(layer_of(kind, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).eval())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=1)
    torch.testing.assert_close(run(layer, x, seed=1)[0], run(layer, x, seed=2)[0], rtol=0, atol=0)
    assert compiled_calls[0] is True


def test_inference_mode_equals_the_pure_torch_loop(kind, compiled_calls):
    torch.manual_seed(6)
    options = dict(num_layers=2, layer_norm=True, zoneout=0.2, recurrent_dropout=0.3)
    layer = randomise(layer_of(kind, **options).eval())
    x = torch.randn(B, T, D, dtype=F64)
    with torch.inference_mode():
        got = layer(x, lengths=LENGTHS)
        with environment("1"):
            want = layer(x, lengths=LENGTHS)
    assert compiled_calls == [True, True, False, False]
    for a, b in zip((got.outputs, *got.state), (want.outputs, *want.state), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_inference_with_a_dropout_mask_equals_the_pure_torch_loop(kind, compiled_calls):
    """Training mode under no_grad: the loop multiplies h by the mask in a scratch block of its own."""
    torch.manual_seed(9)
    layer = randomise(layer_of(kind, recurrent_dropout=0.5).train())
    x = torch.randn(B, T, D, dtype=F64)
    with torch.inference_mode():
        outputs = []
        for compiled in (None, "1"):
            with environment(compiled):
                torch.manual_seed(3)
                outputs.append(layer(x, lengths=LENGTHS).outputs)
    assert compiled_calls == [True, False]
    torch.testing.assert_close(*outputs, **TOL)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_two_threads_split_the_batch_between_them(kind, dtype, compiled_calls):
    """Conftest runs tests on one thread; the loop gives each thread a block of rows of its own."""
    torch.manual_seed(7)
    layer = randomise(layer_of(kind, layer_norm=True, recurrent_dropout=0.3, zoneout=0.2).to(dtype))
    x = torch.randn(16, T, D, dtype=dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert binding.blocks(16) == 2
        tol = TOL if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
        assert_paths_agree(layer, x, lengths=torch.randint(1, T + 1, (16,)), seed=3, **tol)
    finally:
        torch.set_num_threads(threads)
    assert compiled_calls == [True, False]


def test_float32_agrees_with_the_pure_torch_loop(kind, compiled_calls):
    """The loop's float tanh and sigmoid are within 2 ulp of libm's and it sums in its own order, so the
    two float32 paths round apart: each must be as close to the float64 result as float32 allows, and
    for LSTM and GRU they agree elementwise as well (the Elman step, with layer norm over H values
    only, rounds apart further: 3e-5 on an element of 0.02 at this seed)."""
    torch.manual_seed({"gru": 11}.get(kind, 8))  # at seed 8 one GRU gradient differs by 6e-5, before and now
    layer = randomise(layer_of(kind, layer_norm=True, num_layers=2).float())
    x = 3 * torch.randn(B, 20, D)
    truth = run(copy.deepcopy(layer).double(), x.double(), lengths=[20, 11, 3], compiled=False)
    got, want = (run(layer, x, lengths=[20, 11, 3], compiled=c) for c in (True, False))
    for a, b, t in zip(got, want, truth, strict=True):
        bound = 2e-5 * t.abs().max()  # float32's 1.2e-7 per rounding, over 20 steps, 2 layers and norms
        assert (a.double() - t).abs().max() <= bound and (b.double() - t).abs().max() <= bound
    assert compiled_calls == [False] * 2 + [True] * 2 + [False] * 2  # truth, then the two float32 paths
    if kind in ("lstm", "gru"):
        assert_paths_agree(layer, x, lengths=[20, 11, 3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norms", ["none", "ih", "hh", "all", "no-bias"])
def test_gradcheck_first_derivatives(kind, norms):
    """Every differentiable input of the loop, with lengths, a dropout mask and zoneout masks."""
    torch.manual_seed(9)
    t, b, d, h = 3, 2, 2, 2
    g, S = KINDS[kind].gates * h, fields(kind)

    def leaf(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    inputs = dict(x=leaf(t, b, d), weight_ih=leaf(g, d), weight_hh=leaf(g, h))
    state = [leaf(b, h) for _ in range(S)]
    if norms != "no-bias":
        inputs.update(bias_ih=leaf(g), bias_hh=leaf(g))
    if norms in ("ih", "all"):
        inputs["ln_ih_weight"] = leaf(g)
    if norms in ("hh", "all"):
        inputs["ln_hh_weight"] = leaf(g)
    if norms == "all" and KINDS[kind].cell_norm:
        inputs.update(ln_c_weight=leaf(h), ln_c_bias=leaf(h))
    masks = dict(
        dropout_mask=torch.bernoulli(torch.full((b, h), 0.7, dtype=F64)) / 0.7,
        zoneout_masks=torch.bernoulli(torch.full((t, S, b, h), 0.3, dtype=F64)),
        lengths=torch.tensor([3, 2]),
    )

    def fn(*values):
        named = dict(zip(inputs, values[:-S], strict=True))
        y, final = time_loop(kind, state=values[-S:], **named, **masks)
        return y, *final

    assert torch.autograd.gradcheck(fn, (*inputs.values(), *state))


def test_double_backward_is_refused_with_a_pointer_to_the_fallback(kind):
    layer = layer_of(kind, layer_norm=True)
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    match = rf"{kind.upper()} loop has first derivatives only.*RNNKIT_NO_EXTENSION=1"
    with pytest.raises(RuntimeError, match=match):
        torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    with environment("1"):
        (grad,) = torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    grad.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- the fallback ---------------------------------------------------------------------------------


def test_environment_switch_runs_the_pure_torch_loop(kind, compiled_calls):
    layer = layer_of(kind, layer_norm=True)
    x = torch.randn(B, T, D, dtype=F64)
    with environment("1"):
        layer(x)
    with environment("0"):
        layer(x)
    assert compiled_calls == [False, True]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_the_pure_torch_loop(kind, dtype, compiled_calls):
    torch.manual_seed(10)
    layer = layer_of(kind, layer_norm=True).float()
    x = torch.randn(B, T, D)
    want = layer(x, lengths=LENGTHS).outputs
    got = layer.to(dtype)(x.to(dtype), lengths=LENGTHS).outputs
    assert compiled_calls == [True, False]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)


def test_autocast_runs_the_pure_torch_loop(kind, compiled_calls):
    layer = layer_of(kind, layer_norm=True).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(B, T, D))
    assert compiled_calls == [False] and out.outputs.shape == (B, T, H)


def test_the_loop_refuses_arrays_it_would_misread(kind):
    S, G = fields(kind), gates(kind)
    x, w_ih, w_hh = torch.randn(T, B, D), torch.randn(G, D), torch.randn(G, H)
    state = [torch.randn(B, H) for _ in range(S)]
    with pytest.raises(
        ShapeError,
        match=rf"{kind}_loop: weight_hh must be \({G}, 5\) for x \(6, 3, 4\) and h0 \(3, 5\), "
        rf"got \({G + H}, 5\)",
    ):
        time_loop(kind, x, w_ih, torch.randn(G + H, H), state)
    with pytest.raises(ShapeError, match=rf"zoneout_masks must be \(6, {S}, 3, 5\) .*got \(6, 3, 5\)"):
        time_loop(kind, x, w_ih, w_hh, state, zoneout_masks=torch.ones(T, B, H))
    with pytest.raises(DTypeError, match=r"bias_hh must be a torch\.float32 CPU tensor, got torch\.float64"):
        time_loop(kind, x, w_ih, w_hh, state, bias_ih=torch.zeros(G), bias_hh=torch.zeros(G, dtype=F64))
    with pytest.raises(DTypeError, match=r"weight_hh must be a torch\.float32 CPU tensor, got .*float64"):
        time_loop(kind, x, w_ih, w_hh.double(), state)
    with pytest.raises(ShapeError, match=rf"{kind}_loop: the state must have {S} field\(s\) .*got {S + 1}"):
        time_loop(kind, x, w_ih, w_hh, [*state, state[0]])


def test_the_lstm_loop_checks_its_cell_state_and_only_it_takes_a_cell_norm():
    x, w_ih, h0, c0 = torch.randn(T, B, D), torch.randn(4 * H, D), torch.randn(B, H), torch.randn(B, H)
    w_hh = torch.randn(4 * H, H)
    with pytest.raises(
        ShapeError, match=r"c0 must be \(3, 5\) for x \(6, 3, 4\) and h0 \(3, 5\), got \(3, 4\)"
    ):
        time_loop("lstm", x, w_ih, w_hh, (h0, c0[:, :4]))
    with pytest.raises(ConfigError, match=r"gru_loop: ln_c_weight and ln_c_bias are the LSTM's"):
        time_loop("gru", x, w_ih[: 3 * H], w_hh[: 3 * H], (h0,), ln_c_weight=torch.ones(H))
    with pytest.raises(ConfigError, match=r"unknown compiled loop kind 'elman'.*rnn_tanh"):
        time_loop("elman", x, w_ih, w_hh, (h0,))


def test_a_subclass_of_the_cell_keeps_the_generic_loop(kind, compiled_calls):
    _, cell_class, _, extra = LAYERS[kind]

    class Halved(cell_class):
        def update(self, gx, gh, state):
            new = super().update(gx, gh, state)
            return type(new)(new[0] / 2, *new[1:])

    layer = rnnkit.Recurrent(Halved(D, H, **extra).double())
    layer(torch.randn(B, T, D, dtype=F64))
    assert compiled_calls == [False]


def test_info_reports_the_build(kind):
    info = loop_info(kind)
    assert info.available and info.name.startswith(f"rnnkit_{KINDS[kind].source}_")
    assert info.seconds > 0 and info.path and Path(info.library).is_file()


# --- the C struct's layout, checked on load ---------------------------------------------------------


def test_every_library_exports_the_layout_python_describes(kind):
    handle = binding.library(kind).handle
    size, fields_ = binding.parse_layout(handle.rnnkit_loop_layout().decode())
    assert (size, fields_) == binding.describe(binding.Args)
    assert [name for name, *_ in fields_] == [name for name, _ in binding.Args._fields_]


def test_a_field_on_one_side_only_is_named(kind):
    c_layout = binding.library(kind).handle.rnnkit_loop_layout().decode()

    class Added(ctypes.Structure):
        _fields_ = [*binding.Args._fields_, ("new_option", ctypes.c_double)]

    n = len(binding.Args._fields_)
    added = rf"field {n}: nothing in C, 'new_option' at offset \d+ \(8 bytes\) in Python"
    with pytest.raises(binding.LayoutError, match=added):
        binding.check_layout("rnnkit_x", c_layout, binding.describe(Added))

    class Moved(ctypes.Structure):  # eps_h and eps_ih swapped: same size, other offsets
        _fields_ = [(n, t) for n, t in binding.Args._fields_ if n != "eps_ih"]
        _fields_.insert([n for n, _ in _fields_].index("eps_h") + 1, ("eps_ih", ctypes.c_double))

    moved = r"Args of rnnkit_x differs .*'eps_ih' at offset \d+ \(8 bytes\) in C, 'eps_h'"
    with pytest.raises(binding.LayoutError, match=moved):
        binding.check_layout("rnnkit_x", c_layout, binding.describe(Moved))


def test_a_layout_mismatch_on_load_warns_and_falls_back_to_pure_torch(kind, monkeypatch, compiled_calls):
    size, fields_ = binding.describe(binding.Args)
    monkeypatch.setattr(binding, "expected_layout", lambda: (size + 8, [*fields_, ("extra", size, 8)]))
    monkeypatch.setattr(binding, "_opened", {})  # load the library afresh, under the patched layout
    message = r"cannot use its C\+\+ loop .*differs from rnnkit\.kernels\.binding\.Args.*'extra'"
    with pytest.warns(UserWarning, match=message):
        info = loop_info(kind)
    assert not info.available and "differs" in info.reason
    layer = randomise(layer_of(kind, layer_norm=True))
    x = torch.randn(B, T, D, dtype=F64)
    got = layer(x, lengths=LENGTHS)
    with environment("1"):
        want = layer(x, lengths=LENGTHS)
    assert compiled_calls == [False, False]
    torch.testing.assert_close(got.outputs, want.outputs, rtol=0, atol=0)


# --- the build ------------------------------------------------------------------------------------


def test_a_failed_build_warns_once_and_names_why():
    with pytest.warns(UserWarning, match=r"could not build .*no_such_loop.*missing"):
        info = build.load("no_such_loop")
    assert not info.available and "missing" in info.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build.load("no_such_loop") is info  # cached: no second warning


def test_a_compiler_error_is_named_after_every_variant_failed(compiler, monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    variants = [("wide", ["-fno-such-flag-1"]), ("narrow", ["-fno-such-flag-2"])]
    monkeypatch.setattr(build, "_variants", lambda: variants)
    with pytest.warns(UserWarning, match=r"'rnnkit_lstm_loop_wide' \(the build failed: .*-fno-such-flag-1"):
        info = build._build("lstm_loop")
    assert not info.available and "-fno-such-flag-1" in info.reason
    assert build.library_dir().is_relative_to(tmp_path)  # $RNNKIT_CACHE holds the builds


@pytest.mark.skipif(not build.FLOCK, reason="the build lock is POSIX's flock; Windows has torch's alone")
def test_a_build_killed_midway_does_not_block_later_builds(compiler, monkeypatch, tmp_path):
    """torch's plain lock file, left by a killed build, would make every later build wait forever."""
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    name, flags = build._variants()[-1]
    folder = build.library_dir() / f"rnnkit_rnn_loop_{name}"
    assert folder.is_relative_to(tmp_path)
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what a build killed between torch's acquire and release leaves
    result = []
    compile_it = threading.Thread(
        target=lambda: result.append(
            build._compile(f"rnnkit_rnn_loop_{name}", build.SOURCES / "rnn_loop.cpp", flags)
        ),
        daemon=True,  # a regression waits forever: leave it behind rather than hang the suite
    )
    compile_it.start()
    compile_it.join(timeout=300)
    assert result, "the build still waits for the stale lock file after 300 s"
    info = result[0]
    assert info.available and info.compiled and Path(info.library).is_file()
    assert not (folder / "lock").exists()
