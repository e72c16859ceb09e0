"""The C++ GRU loop (csrc/gru_loop.cpp) equals the pure-torch cell loop and the reference maths.

rnnkit's GRUCell on the cell path runs through the compiled loop when it builds; ``RNNKIT_NO_EXTENSION=1``
gives the pure-torch loop of ``Recurrent._scan``. Each test runs both and compares outputs, final states
and the gradients of the input, the initial state and every parameter in float64 to 1e-10. The helpers
that run both paths and compare them come from test_lstm_extension.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_lstm_extension import TOL, assert_paths_agree, environment, randomise, run
from torch import nn

import rnnkit
import rnnkit.layers.recurrent as recurrent
from rnnkit.cells.base import RNNState
from rnnkit.errors import DTypeError, ShapeError
from rnnkit.functional.gru_loop import gru_loop, gru_loop_info
from rnnkit.functional.steps import gru_step, gru_update

F64 = torch.float64
B, T, D, H = 3, 6, 4, 5
LENGTHS = [6, 4, 1]


@pytest.fixture(scope="module", autouse=True)
def built():
    """Build (or load) the extension once; skip only where this machine cannot compile at all."""
    with environment(None):
        info = gru_loop_info()
    if not info.available and info.reason.startswith(("no C++ compiler", "ninja")):
        pytest.skip(f"the C++ loop cannot be built here: {info.reason}")
    assert info.available, info.reason
    return info


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


CONFIGS = {"L1": dict(num_layers=1), "L2-bi": dict(num_layers=2, bidirectional=True)}


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_compiled_loop_equals_pure_torch_loop(layer_norm, config, lengths, compiled_calls):
    torch.manual_seed(0)
    layer = randomise(rnnkit.GRU(D, H, layer_norm=layer_norm, path="cell", **CONFIGS[config]).double())
    state = (torch.randn(layer.num_states, B, H, dtype=F64),)
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), state, lengths)
    n = layer.num_states  # one Recurrent per layer and direction, on each path
    assert compiled_calls == [True] * n + [False] * n


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_learned_initial_state_and_no_bias(layer_norm, compiled_calls):
    torch.manual_seed(1)
    options = dict(layer_norm=layer_norm, learn_initial_state=True, bias=False)
    layer = randomise(rnnkit.GRU(D, H, **options).double())
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), lengths=LENGTHS)
    assert compiled_calls == [True, False]


def test_layer_norms_with_a_bias_fold_it_into_the_gate_biases(compiled_calls):
    """A LayerNorm's beta adds where the bias beside it does: b_ih's, or b_hh's inside the reset gate."""
    torch.manual_seed(2)
    layer = rnnkit.GRU(D, H, layer_norm=True).double()
    cell = layer.cells[0]
    cell.ln_ih, cell.ln_hh = nn.LayerNorm(3 * H).double(), nn.LayerNorm(3 * H).double()
    randomise(layer)
    assert_paths_agree(layer, torch.randn(B, T, D, dtype=F64), lengths=LENGTHS)
    assert compiled_calls == [True, False]


def test_a_layer_norm_without_a_gain_keeps_the_generic_loop(compiled_calls):
    layer = rnnkit.GRU(D, H, layer_norm=True).double()
    layer.cells[0].ln_hh = nn.LayerNorm(3 * H, elementwise_affine=False).double()
    layer(torch.randn(B, T, D, dtype=F64))
    assert compiled_calls == [False]


def steps_reference(cell, x, h, lengths):
    """The spec: functional/steps.py one step at a time, layer norm written out (Ba et al. 2016)."""
    outputs = []
    for t, x_t in enumerate(x.unbind(1)):
        if cell.ln_hh is None:
            new_h = gru_step(x_t, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        else:
            gx = F.layer_norm(x_t @ cell.weight_ih.T, (3 * H,), cell.ln_ih.weight) + cell.bias_ih
            gh = F.layer_norm(h @ cell.weight_hh.T, (3 * H,), cell.ln_hh.weight) + cell.bias_hh
            new_h = gru_update(gx, gh, h)
        real = (t < lengths)[:, None]  # (B, 1)
        h = torch.where(real, new_h, h)
        outputs.append(new_h * real)
    return torch.stack(outputs, 1), h


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_compiled_loop_equals_steps_reference(layer_norm, compiled_calls):
    torch.manual_seed(3)
    layer = randomise(rnnkit.GRU(D, H, layer_norm=layer_norm, path="cell").double())
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    leaves = [x, h0, *layer.parameters()]
    out = layer(x, h0[None], LENGTHS)
    want = steps_reference(layer.cells[0], x, h0, torch.tensor(LENGTHS))
    got = (out.outputs, out.state.h[0])
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
    torch.manual_seed(4)
    layer = randomise(rnnkit.GRU(D, H, layer_norm=True, zoneout=0.3).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    out = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], **TOL)
        assert torch.all(out.outputs[b, n:] == 0)
        torch.testing.assert_close(out.state.h[:, b], alone.state.h[:, 0], **TOL)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
def test_dropout_and_zoneout_in_training_draw_the_same_masks(layer_norm, compiled_calls):
    torch.manual_seed(5)
    options = dict(recurrent_dropout=0.4, zoneout=0.3, layer_norm=layer_norm)
    layer = randomise(rnnkit.GRU(D, H, num_layers=2, bidirectional=True, **options).double().train())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=11)
    assert compiled_calls == [True] * 4 + [False] * 4
    # the masks are random: another seed gives other numbers
    first, other = run(layer, x, lengths=LENGTHS, seed=11), run(layer, x, lengths=LENGTHS, seed=12)
    assert not torch.allclose(first[0], other[0])


def test_training_mode_without_grad_draws_the_same_masks(compiled_calls):
    torch.manual_seed(6)
    layer = randomise(rnnkit.GRU(D, H, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).double().train())
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


def test_eval_mode_uses_the_expectations(compiled_calls):
    torch.manual_seed(7)
    layer = randomise(rnnkit.GRU(D, H, recurrent_dropout=0.4, zoneout=0.3, layer_norm=True).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    assert_paths_agree(layer, x, lengths=LENGTHS, seed=1)
    torch.testing.assert_close(run(layer, x, seed=1)[0], run(layer, x, seed=2)[0], rtol=0, atol=0)
    assert compiled_calls[0] is True


def test_inference_mode_equals_the_pure_torch_loop(compiled_calls):
    torch.manual_seed(8)
    options = dict(num_layers=2, layer_norm=True, zoneout=0.2, recurrent_dropout=0.3)
    layer = randomise(rnnkit.GRU(D, H, **options).double().eval())
    x = torch.randn(B, T, D, dtype=F64)
    with torch.inference_mode():
        got = layer(x, lengths=LENGTHS)
        with environment("1"):
            want = layer(x, lengths=LENGTHS)
    assert compiled_calls == [True, True, False, False]
    for a, b in zip((got.outputs, *got.state), (want.outputs, *want.state), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_inference_with_a_dropout_mask_equals_the_pure_torch_loop(compiled_calls):
    """Training mode under no_grad: the loop multiplies h by the mask in a scratch block of its own."""
    torch.manual_seed(9)
    layer = randomise(rnnkit.GRU(D, H, recurrent_dropout=0.5).double().train())
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
def test_two_threads_split_the_batch_between_them(dtype):
    """Conftest runs tests on one thread; the loop gives each thread a block of rows of its own."""
    torch.manual_seed(10)
    layer = randomise(rnnkit.GRU(D, H, layer_norm=True, recurrent_dropout=0.3, zoneout=0.2).to(dtype))
    x = torch.randn(16, T, D, dtype=dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tol = TOL if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
        assert_paths_agree(layer, x, lengths=torch.randint(1, T + 1, (16,)), seed=3, **tol)
    finally:
        torch.set_num_threads(threads)


def test_float32_agrees_with_the_pure_torch_loop(compiled_calls):
    torch.manual_seed(11)
    layer = randomise(rnnkit.GRU(D, H, layer_norm=True, num_layers=2))
    x = 3 * torch.randn(B, 20, D)
    assert_paths_agree(layer, x, lengths=[20, 11, 3], rtol=1e-4, atol=1e-5)
    assert compiled_calls == [True] * 2 + [False] * 2


@pytest.mark.parametrize("norms", ["none", "ih", "hh", "all", "no-bias"])
def test_gradcheck_first_derivatives(norms):
    """Every differentiable input of the loop, with lengths, a dropout mask and zoneout masks."""
    torch.manual_seed(12)
    t, b, d, h = 3, 2, 2, 2

    def leaf(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    inputs = dict(x=leaf(t, b, d), weight_ih=leaf(3 * h, d), h0=leaf(b, h), weight_hh=leaf(3 * h, h))
    if norms != "no-bias":
        inputs.update(bias_ih=leaf(3 * h), bias_hh=leaf(3 * h))
    if norms in ("ih", "all"):
        inputs["ln_ih_weight"] = leaf(3 * h)
    if norms in ("hh", "all"):
        inputs["ln_hh_weight"] = leaf(3 * h)
    masks = dict(
        dropout_mask=torch.bernoulli(torch.full((b, h), 0.7, dtype=F64)) / 0.7,
        zoneout_masks=torch.bernoulli(torch.full((t, b, h), 0.3, dtype=F64)),
        lengths=torch.tensor([3, 2]),
    )

    def fn(*values):
        return gru_loop(**dict(zip(inputs, values, strict=True)), **masks)  # (outputs, h_T)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()))


def test_double_backward_is_refused_with_a_pointer_to_the_fallback():
    layer = rnnkit.GRU(D, H, layer_norm=True).double()
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"GRU loop has first derivatives only.*RNNKIT_NO_EXTENSION=1"):
        torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    with environment("1"):
        (grad,) = torch.autograd.grad(layer(x).outputs.sum(), x, create_graph=True)
    grad.sum().backward()


# --- the fallback ---------------------------------------------------------------------------------


def test_environment_switch_runs_the_pure_torch_loop(compiled_calls):
    layer = rnnkit.GRU(D, H, layer_norm=True).double()
    x = torch.randn(B, T, D, dtype=F64)
    with environment("1"):
        layer(x)
    with environment("0"):
        layer(x)
    assert compiled_calls == [False, True]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_the_pure_torch_loop(dtype, compiled_calls):
    torch.manual_seed(13)
    layer = rnnkit.GRU(D, H, layer_norm=True)
    x = torch.randn(B, T, D)
    want = layer(x, lengths=LENGTHS).outputs
    got = layer.to(dtype)(x.to(dtype), lengths=LENGTHS).outputs
    assert compiled_calls == [True, False]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)


def test_autocast_runs_the_pure_torch_loop(compiled_calls):
    layer = rnnkit.GRU(D, H, layer_norm=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(B, T, D))
    assert compiled_calls == [False] and out.outputs.shape == (B, T, H)


def test_gru_loop_refuses_arrays_it_would_misread():
    x, w_ih, h0, w_hh = torch.randn(T, B, D), torch.randn(3 * H, D), torch.randn(B, H), torch.randn(3 * H, H)
    with pytest.raises(
        ShapeError,
        match=r"gru_loop: weight_hh must be \(15, 5\) for x \(6, 3, 4\) and h0 \(3, 5\), got \(20, 5\)",
    ):
        gru_loop(x, w_ih, h0, torch.randn(4 * H, H))
    with pytest.raises(ShapeError, match=r"zoneout_masks must be \(6, 3, 5\) .*got \(6, 2, 3, 5\)"):
        gru_loop(x, w_ih, h0, w_hh, zoneout_masks=torch.ones(T, 2, B, H))
    with pytest.raises(DTypeError, match=r"bias_hh must be a torch\.float32 CPU tensor, got torch\.float64"):
        gru_loop(x, w_ih, h0, w_hh, bias_hh=torch.zeros(3 * H, dtype=F64))


def test_a_subclass_of_gru_cell_keeps_the_generic_loop(compiled_calls):
    class Halved(rnnkit.GRUCell):
        def update(self, gx, gh, state):
            return RNNState(super().update(gx, gh, state).h / 2)

    layer = rnnkit.Recurrent(Halved(D, H).double())
    layer(torch.randn(B, T, D, dtype=F64))
    assert compiled_calls == [False]


def test_info_reports_the_build(built):
    assert built.available and built.name.startswith("rnnkit_gru_loop_")
    assert built.seconds > 0 and built.path
