"""minGRU and minLSTM (Feng et al. 2024): the scans, the cells and the layers against the reference steps.

The paths that must agree: a loop of the reference steps (functional/steps.py) == sequential_scan ==
log_space_scan == the cell stepped by hand == the cell's forward_sequence, for outputs and gradients.
Then the layer contract: padding invariance in both directions, streaming, stacking, state layout, errors.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import rnnkit
import rnnkit.cells.minimal as cells_module
import rnnkit.functional.scan as scan_module
from rnnkit.functional import (
    log_positive_activation,
    log_space_scan,
    mingru_step,
    minlstm_step,
    positive_activation,
    sequential_scan,
)
from rnnkit.functional.scan import resolve_scan, scan

F64 = torch.float64
D, H = 3, 4
KINDS = {"mingru": (rnnkit.MinGRUCell, rnnkit.MinGRU), "minlstm": (rnnkit.MinLSTMCell, rnnkit.MinLSTM)}
SCANS = ["sequential", "parallel"]
SIZES = [(1, 1, 1), (2, 5, 3), (3, 17, 4)]  # (B, T, H)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=generator(seed), dtype=F64)


def reference_step(kind: str, weight_ih, bias_ih):
    """The spec as a function of (x_t, h): the reference step with the fused weights split by gate."""
    weights = weight_ih.chunk(2 if kind == "mingru" else 3)
    biases = (None,) * len(weights) if bias_ih is None else bias_ih.chunk(len(weights))
    args = [t for pair in zip(weights, biases, strict=True) for t in pair]
    step = mingru_step if kind == "mingru" else minlstm_step
    return lambda x_t, h: step(x_t, h, *args)


def reference_loop(step, x, h0):
    """h (B, T, H) by stepping the spec one step at a time."""
    h, hs = h0, []
    for x_t in x.unbind(1):
        h = step(x_t, h)
        hs.append(h)
    return torch.stack(hs, 1)


def coefficients_from(step, x, hidden):
    """a, b (B, T, H) of h' = a h + b, read off the affine step itself: b = step(0), a = step(1) - b."""
    zeros = torch.zeros(x.shape[0], x.shape[1], hidden, dtype=F64)
    b = step(x, zeros)
    return step(x, torch.ones_like(zeros)) - b, b


def make_cell(kind: str, scan_name="sequential", bias=True, input_size=D, hidden=H, seed=0):
    torch.manual_seed(seed)
    return KINDS[kind][0](input_size, hidden, bias=bias, scan=scan_name).double()


def make_layer(kind: str, scan_name="sequential", num_layers=1, bidirectional=False, **options):
    torch.manual_seed(0)
    return KINDS[kind][1](D, H, num_layers, bidirectional, scan=scan_name, **options).double()


# ---------------------------------------------------------------- the scans against the reference steps


@pytest.mark.parametrize("h0_kind", ["zero", "positive"])
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_both_scans_equal_the_reference_step_loop(kind, size, h0_kind):
    B, T, hidden = size
    G = 2 if kind == "mingru" else 3
    step = reference_step(kind, randn(G * hidden, D, seed=1), randn(G * hidden, seed=2))
    x = randn(B, T, D, seed=3, scale=2.0)
    h0 = torch.zeros(B, hidden, dtype=F64) if h0_kind == "zero" else randn(B, hidden, seed=4).abs() + 0.1
    want = reference_loop(step, x, h0)
    a, b = coefficients_from(step, x, hidden)
    assert bool((a > 0).all() and (a < 1).all() and (b > 0).all()), "the spec must give 0 < a < 1, b > 0"
    torch.testing.assert_close(sequential_scan(a, b, h0), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(log_space_scan(a.log(), b.log(), h0.log()), want, rtol=1e-10, atol=1e-12)
    for method in ("auto", *SCANS):
        torch.testing.assert_close(scan(a, b, h0, method), want, rtol=1e-10, atol=1e-12)


def spy(monkeypatch, module, name: str) -> list:
    """Count the calls of module.name while still calling it."""
    calls, real = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_scan_parallel_takes_the_log_space_path_for_loggable_inputs(monkeypatch):
    calls = spy(monkeypatch, scan_module, "log_space_scan")
    a, b = torch.rand(2, 6, 3, dtype=F64) + 0.01, torch.rand(2, 6, 3, dtype=F64)
    scan(a, b, torch.zeros(2, 3, dtype=F64), "parallel")
    assert calls == ["log_space_scan"]
    scan(a, b, torch.zeros(2, 3, dtype=F64), "sequential")
    scan(a, b, torch.zeros(2, 3, dtype=F64), "auto")  # CPU: sequential
    assert calls == ["log_space_scan"]


@pytest.mark.parametrize(
    "case", ["negative_h0", "negative_b", "zero_a", "zero_h0_needing_grad", "negative_a"]
)
def test_scan_parallel_falls_back_to_sequential_where_logs_do_not_serve(case, monkeypatch):
    calls = spy(monkeypatch, scan_module, "log_space_scan")
    a, b, h0 = (
        torch.rand(2, 6, 3, dtype=F64) + 0.01,
        torch.rand(2, 6, 3, dtype=F64),
        torch.rand(2, 3, dtype=F64),
    )
    if case == "negative_h0":
        h0[1, 2] = -0.5
    elif case == "negative_b":
        b[0, 3, 1] = -0.1
    elif case in ("zero_a", "negative_a"):
        a[1, 0, 0] = 0.0 if case == "zero_a" else -0.3
    else:
        h0 = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    got = scan(a, b, h0, "parallel")
    assert calls == [], "the log-space scan must not run"
    want = reference_loop(lambda ab, h: ab[..., 0] * h + ab[..., 1], torch.stack([a, b], -1), h0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    if h0.requires_grad:
        got.sum().backward()
        assert torch.isfinite(h0.grad).all()


def test_log_space_scan_in_float32_stays_close_on_long_sequences():
    # precision, not exactness: |a*_T| ~ 0.7 T here, and float32 keeps about 1e-4 relative accuracy
    g = generator(5)
    m, k = torch.randn(2, 512, 8, generator=g), torch.randn(2, 512, 8, generator=g)
    a, b = torch.sigmoid(-m), torch.sigmoid(m) * positive_activation(k)
    h0 = torch.rand(2, 8, generator=g)
    torch.testing.assert_close(
        log_space_scan(a.log(), b.log(), h0.log()), sequential_scan(a, b, h0), rtol=1e-3, atol=1e-5
    )


def test_auto_picks_parallel_off_the_cpu():
    assert resolve_scan("auto", torch.device("cpu")) == "sequential"
    assert resolve_scan("auto", torch.device("cuda")) == "parallel"  # a device name, no GPU needed
    assert resolve_scan("auto", "meta") == "parallel"
    for method in SCANS:
        assert resolve_scan(method, "cpu") == resolve_scan(method, "cuda") == method


def test_scans_refuse_coefficients_of_mismatched_shapes():
    a, h0 = torch.rand(2, 5, 3), torch.rand(2, 3)
    match = (
        r"the scan needs a and b of one shape \(B, T, H\) and h0 \(B, H\); got a \(2, 5, 3\), b \(2, 4, 3\)"
    )
    for fn in (sequential_scan, log_space_scan, scan):
        with pytest.raises(rnnkit.ShapeError, match=match):
            fn(a, a[:, :4], h0)
    with pytest.raises(rnnkit.ShapeError, match=r"h0 \(3, 2\)"):
        scan(a, a, h0.T)


def test_positive_activation_and_its_log():
    x = randn(1000, seed=9, scale=4.0)
    x[:2] = torch.tensor([0.0, -0.0], dtype=F64)
    g = positive_activation(x)
    torch.testing.assert_close(g[x >= 0], x[x >= 0] + 0.5, rtol=0, atol=0)
    torch.testing.assert_close(g[x < 0], torch.sigmoid(x[x < 0]), rtol=0, atol=0)
    torch.testing.assert_close(log_positive_activation(x), g.log())
    far = torch.tensor([-200.0, -90.0, 1e4])  # float32: sigmoid(-200) underflows, its log does not
    assert torch.isfinite(log_positive_activation(far)).all()


def test_the_cells_fast_g_equals_the_spec_in_values_and_gradients():
    fast = cells_module._PositiveActivation.apply
    x = randn(2000, seed=10, scale=4.0)
    x[:2] = torch.tensor([0.0, -0.0], dtype=F64)
    torch.testing.assert_close(fast(x), positive_activation(x), rtol=0, atol=0)
    y = x.clone().requires_grad_()
    weights = randn(2000, seed=11)
    (got,) = torch.autograd.grad((fast(y) * weights).sum(), y)
    (want,) = torch.autograd.grad((positive_activation(y) * weights).sum(), y)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)  # at 0 too: slope 1, as torch.where's
    away_from_zero = (torch.sign(randn(20, seed=12)) * (randn(20, seed=13).abs() + 0.1)).requires_grad_()
    assert torch.autograd.gradcheck(fast, (away_from_zero,))


# ---------------------------------------------------------------- gradients of the scans


@pytest.mark.parametrize("needs_grad", ["abh", "b", "ah"])
def test_gradcheck_sequential_scan(needs_grad):
    # its backward is hand-written (the reverse recurrence): check it for every subset of inputs
    a = torch.rand(2, 4, 3, dtype=F64) * 0.9 + 0.05
    b, h0 = randn(2, 4, 3, seed=1), randn(2, 3, seed=2)
    inputs = [t.requires_grad_(name in needs_grad) for t, name in zip((a, b, h0), "abh", strict=True)]
    assert torch.autograd.gradcheck(sequential_scan, inputs)


def test_sequential_scan_gradients_equal_autograd_through_the_step_loop():
    a = (torch.rand(3, 9, 4, dtype=F64) * 0.9 + 0.05).requires_grad_()
    b, h0 = randn(3, 9, 4, seed=1).requires_grad_(), randn(3, 4, seed=2).requires_grad_()
    weights = randn(3, 9, 4, seed=3)
    loop = reference_loop(lambda ab, h: ab[..., 0] * h + ab[..., 1], torch.stack([a, b], -1), h0)
    want = torch.autograd.grad((loop * weights).sum(), (a, b, h0))
    got = torch.autograd.grad((sequential_scan(a, b, h0) * weights).sum(), (a, b, h0))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


def test_gradcheck_log_space_scan():
    log_a = (-torch.rand(2, 4, 3, dtype=F64) - 0.05).requires_grad_()
    log_b, log_h0 = randn(2, 4, 3, seed=1).requires_grad_(), randn(2, 3, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(log_space_scan, (log_a, log_b, log_h0))


def test_log_space_scan_takes_minus_infinity_as_zero_with_finite_gradients():
    # padded steps (log b = -inf, log a = 0) and h0 = 0 that needs no gradient
    log_a = (-torch.rand(2, 5, 3, dtype=F64)).requires_grad_()
    log_b = randn(2, 5, 3, seed=1)
    log_b[:, 3:] = -math.inf
    log_b.requires_grad_()
    h = log_space_scan(log_a, log_b, torch.full((2, 3), -math.inf, dtype=F64))
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(log_a.grad).all() and torch.isfinite(log_b.grad).all()
    assert torch.all(log_b.grad[:, 3:] == 0)


# ---------------------------------------------------------------- the cells


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_contract_and_parameters(kind, bias):
    cell = make_cell(kind, bias=bias)
    G = 2 if kind == "mingru" else 3
    names = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert names == ({"weight_ih": (G * H, D), "bias_ih": (G * H,)} if bias else {"weight_ih": (G * H, D)})
    assert (cell.input_size, cell.hidden_size, cell.state_size) == (D, H, H)
    assert cell.state_type is rnnkit.RNNState
    state = cell.initial_state(2)
    assert isinstance(state, rnnkit.RNNState) and torch.equal(state.h, torch.zeros(2, H, dtype=F64))
    bound = 1 / math.sqrt(H)
    assert all(float(p.detach().abs().max()) <= bound for p in cell.parameters())
    assert "scan='sequential'" in repr(cell) and ("bias=False" in repr(cell)) == (not bias)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_step_form_equals_forward_sequence_equals_reference(kind, bias, with_state):
    cell = make_cell(kind, bias=bias)
    x = randn(3, 7, D, seed=1, scale=2.0)
    state = rnnkit.RNNState(randn(3, H, seed=2).abs()) if with_state else None
    h0 = cell.initial_state(3).h if state is None else state.h
    want = reference_loop(reference_step(kind, cell.weight_ih, cell.bias_ih), x, h0)
    stepped, s = [], state
    for x_t in x.unbind(1):
        y, s = cell(x_t, s)
        stepped.append(y)
    torch.testing.assert_close(torch.stack(stepped, 1), want, rtol=1e-12, atol=1e-14)
    for method in SCANS:
        cell.scan = method
        outputs, final = cell.forward_sequence(x, state)
        torch.testing.assert_close(outputs, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(final.h, want[:, -1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", SCANS)
@pytest.mark.parametrize("kind", KINDS)
def test_cell_forward_sequence_with_lengths_carries_the_state_over_padding(kind, method):
    cell = make_cell(kind, method)
    x, lengths = randn(3, 6, D, seed=1), [6, 2, 4]
    outputs, final = cell.forward_sequence(x, None, torch.tensor(lengths))
    for b, n in enumerate(lengths):
        alone, alone_final = cell.forward_sequence(x[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], alone[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(final.h[b], alone_final.h[0], rtol=1e-12, atol=1e-14)
        assert torch.all(outputs[b, n:] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_gates_stay_finite_where_plain_ratios_would_not(kind):
    # f / (f + i) is 0/0 in float32 once both gates underflow; the cell never divides
    cell = KINDS[kind][0](1, 1, bias=False)
    with torch.no_grad():
        cell.weight_ih.fill_(1.0)
    x = torch.full((1, 3, 1), -200.0)
    for method in SCANS:
        cell.scan = method
        assert torch.isfinite(cell.forward_sequence(x)[0]).all()
    assert torch.isfinite(cell(x[:, 0])[0]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_cell_parallel_falls_back_for_a_negative_state(kind, monkeypatch):
    calls = spy(monkeypatch, cells_module, "log_space_scan")
    cell = make_cell(kind, "parallel")
    x, h0 = randn(2, 5, D, seed=1), randn(2, H, seed=2)
    assert bool((h0 < 0).any())
    outputs, _ = cell.forward_sequence(x, rnnkit.RNNState(h0))
    assert calls == []
    want = reference_loop(reference_step(kind, cell.weight_ih, cell.bias_ih), x, h0)
    torch.testing.assert_close(outputs, want, rtol=1e-12, atol=1e-14)
    cell.forward_sequence(x, rnnkit.RNNState(h0.abs()))
    cell.forward_sequence(x)
    assert calls == ["log_space_scan", "log_space_scan"]


class SequenceOf(torch.nn.Module):
    """forward(x, h0, lengths) = cell.forward_sequence, so functional_call can swap the cell's weights."""

    def __init__(self, cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, h0, lengths):
        outputs, final = self.cell.forward_sequence(x, rnnkit.RNNState(h0), lengths)
        return outputs, final.h


@pytest.mark.parametrize("lengths", [None, [4, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("method", SCANS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_cell_forward_sequence(kind, method, lengths):
    module = SequenceOf(make_cell(kind, method, input_size=2, hidden=3))
    names = [n for n, _ in module.named_parameters()]

    def fn(x, h0, *weights):
        return torch.func.functional_call(module, dict(zip(names, weights, strict=True)), (x, h0, lengths))

    x = randn(2, 4, 2, seed=1).requires_grad_()
    h0 = (randn(2, 3, seed=2).abs() + 0.1).requires_grad_()  # > 0: the parallel scan differentiates log h0
    weights = [p.detach().clone().requires_grad_() for p in module.parameters()]
    assert torch.autograd.gradcheck(fn, (x, h0, *weights))


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_cell_step(kind):
    cell = make_cell(kind, input_size=2, hidden=3)
    names = [n for n, _ in cell.named_parameters()]

    def fn(x, h, *weights):
        return torch.func.functional_call(
            cell, dict(zip(names, weights, strict=True)), (x, rnnkit.RNNState(h))
        )[0]

    x, h = randn(2, 2, seed=1).requires_grad_(), randn(2, 3, seed=2).requires_grad_()
    weights = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(fn, (x, h, *weights))


# ---------------------------------------------------------------- the layers

LENGTHS = [5, 3, 1, 4]


def padded_input(lengths=LENGTHS, time=5, features=D, seed=1):
    """(B, T, D) whose padded steps hold large garbage."""
    x = randn(len(lengths), time, features, seed=seed)
    for b, n in enumerate(lengths):
        x[b, n:] = 5.0 + randn(time - n, features, seed=seed + b).abs()
    return x


@pytest.mark.parametrize("method", SCANS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_is_padding_invariant(kind, bidirectional, num_layers, method):
    layer = make_layer(kind, method, num_layers, bidirectional)
    x = padded_input()
    out = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.state.h[:, b], alone.state.h[:, 0], rtol=1e-10, atol=1e-12)
        assert torch.all(out.outputs[b, n:] == 0), f"sequence {b}: nonzero outputs on padded steps"
    if bidirectional and num_layers == 1:  # the backward half starts at each sequence's last real step
        for b, n in enumerate(LENGTHS):
            last_only = layer(x[b : b + 1, n - 1 : n])
            torch.testing.assert_close(
                out.outputs[b, n - 1, H:], last_only.outputs[0, 0, H:], rtol=1e-10, atol=1e-12
            )


@pytest.mark.parametrize("method", SCANS)
@pytest.mark.parametrize("kind", KINDS)
def test_streaming_in_chunks_with_the_carried_state_equals_one_shot(kind, method):
    layer = make_layer(kind, method, num_layers=2)
    x = randn(2, 12, D, seed=4)
    whole = layer(x)
    state, outputs, start = None, [], 0
    for size in (5, 4, 3):
        out = layer(x[:, start : start + size], state)
        outputs.append(out.outputs)
        state, start = out.state, start + size
    torch.testing.assert_close(torch.cat(outputs, 1), whole.outputs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state.h, whole.state.h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_equals_stepping_the_cells_by_hand(kind):
    # a 2-layer stack is the reference step of layer 0's cell, then of layer 1's on its outputs
    layer = make_layer(kind, num_layers=2)
    x = randn(2, 6, D, seed=5)
    h = x
    for cell in layer.cells:
        h = reference_loop(reference_step(kind, cell.weight_ih, cell.bias_ih), h, cell.initial_state(2).h)
    torch.testing.assert_close(layer(x).outputs, h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_state_layout(kind, bidirectional):
    layer = make_layer(kind, num_layers=3, bidirectional=bidirectional)
    K = 2 if bidirectional else 1
    assert (layer.output_size, layer.num_states, layer.state_type) == (K * H, 3 * K, rnnkit.RNNState)
    x = randn(2, 6, D, seed=6)
    out = layer(x, lengths=[6, 4])
    assert out.outputs.shape == (2, 6, K * H)
    assert isinstance(out.state, rnnkit.RNNState) and out.state.h.shape == (3 * K, 2, H)
    # torch's order: (layer 0 fw, layer 0 bw, layer 1 fw, ...); the top layer's forward final state is its
    # output at the last real step, the backward one its output at step 0
    top = (3 - 1) * K
    torch.testing.assert_close(out.state.h[top, 1], out.outputs[1, 3, :H], rtol=0, atol=0)
    if bidirectional:
        torch.testing.assert_close(out.state.h[top + 1], out.outputs[:, 0, H:], rtol=0, atol=0)
    initial = layer.initial_state(2)
    assert isinstance(initial, rnnkit.RNNState) and torch.equal(
        initial.h, torch.zeros(3 * K, 2, H, dtype=F64)
    )
    torch.testing.assert_close(layer(x, initial).outputs, layer(x).outputs, rtol=0, atol=0)
    torch.testing.assert_close(layer(x, initial.h).outputs, layer(x).outputs, rtol=0, atol=0)  # a bare h


@pytest.mark.parametrize("kind", KINDS)
def test_residual_stack_adds_the_input_where_sizes_agree(kind):
    torch.manual_seed(0)
    plain = KINDS[kind][1](H, H, num_layers=2).double()
    residual = KINDS[kind][1](H, H, num_layers=2, residual=True).double()
    residual.load_state_dict(plain.state_dict())
    x = randn(2, 5, H, seed=7)
    first = plain.stack.layers[0](x).outputs + x
    want = plain.stack.layers[1](first).outputs + first
    torch.testing.assert_close(residual(x).outputs, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_and_sequential_layers_give_the_same_outputs_and_gradients(kind):
    layer = make_layer(kind, "sequential", num_layers=2, bidirectional=True)
    x = padded_input()
    h0 = randn(4, len(LENGTHS), H, seed=8).abs() + 0.1
    results = {}
    for method in SCANS:
        layer.scan = method
        layer.zero_grad()
        xg, hg = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out = layer(xg, hg, LENGTHS)
        (out.outputs.sin().sum() + out.state.h.cos().sum()).backward()
        grads = [p.grad.clone() for p in layer.parameters()]
        results[method] = (out.outputs.detach(), out.state.h.detach(), xg.grad, hg.grad, *grads)
    for got, want in zip(results["parallel"], results["sequential"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_runs_the_cell_as_one_sequence(kind, monkeypatch):
    layer = make_layer(kind)
    cell = layer.cells[0]
    calls = []
    real = cell.forward_sequence
    monkeypatch.setattr(cell, "forward_sequence", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setattr(cell, "forward", lambda *a: pytest.fail("the step form must not run"))
    layer(randn(2, 6, D), lengths=[6, 2])
    assert calls == [(2, 6, D)]


def test_scan_attribute_sets_every_cell_and_shows_in_repr():
    layer = make_layer("mingru", "auto", num_layers=2, bidirectional=True)
    assert layer.scan == "auto" and len(layer.cells) == 4
    assert repr(layer).splitlines()[1].strip() == "3, 4, num_layers=2, bidirectional=True, scan='auto'"
    assert repr(layer.cells[0]) == "MinGRUCell(3, 4, scan='auto')"
    layer.scan = "parallel"
    assert {cell.scan for cell in layer.cells} == {"parallel"} and "scan='parallel'" in repr(layer)
    plain = KINDS["minlstm"][1](D, H, bias=False, residual=True)
    assert plain.extra_repr() == "3, 4, bias=False, residual=True, scan='auto'"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_scan_name_is_a_config_error(kind):
    cell_class, layer_class = KINDS[kind]
    expected = r"expected one of \['auto', 'parallel', 'sequential'\]"
    match = rf"unknown scan 'paralel'; {expected}\. Did you mean 'parallel'\?"
    with pytest.raises(rnnkit.ConfigError, match=match):
        cell_class(D, H, scan="paralel")
    with pytest.raises(rnnkit.ConfigError, match=match):
        layer_class(D, H, scan="paralel")
    layer = layer_class(D, H)
    with pytest.raises(rnnkit.ConfigError, match=match):
        layer.scan = "paralel"
    assert layer.scan == "auto"
    a = torch.rand(1, 2, 3)
    with pytest.raises(rnnkit.ConfigError, match=match):
        scan(a, a, a[:, 0], "paralel")


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs_are_shape_errors_that_say_what_came(kind):
    layer = make_layer(kind, num_layers=2, bidirectional=True)
    cell = layer.cells[0]
    x = randn(2, 5, D)
    with pytest.raises(
        rnnkit.ShapeError, match=r"input must be \(B, T, D\), batch first; got rank 2 .*unsqueeze"
    ):
        layer(x[0])
    with pytest.raises(rnnkit.ShapeError, match=r"input feature size must be 3 .*got 5"):
        layer(randn(2, 5, 5))
    with pytest.raises(
        rnnkit.ShapeError, match=r"lengths must hold one length per sequence: expected 2, got shape \(3,\)"
    ):
        layer(x, lengths=[5, 4, 3])
    with pytest.raises(rnnkit.ShapeError, match=r"lengths must lie in \[1, 5\].*got min 0, max 5"):
        layer(x, lengths=[5, 0])
    with pytest.raises(rnnkit.ShapeError, match=r"lengths must lie in \[1, 5\].*max 6"):
        cell.forward_sequence(x, None, [6, 1])
    with pytest.raises(rnnkit.ShapeError, match=r"state fields must be \(L\*K, B, H\) with L\*K = 4"):
        layer(x, torch.zeros(2, 2, H, dtype=F64))
    with pytest.raises(rnnkit.ShapeError, match=r"input must be \(B, D\); got rank 3"):
        cell(x)
    with pytest.raises(rnnkit.ShapeError, match=r"input must be \(B, T, D\), batch first; got rank 2"):
        cell.forward_sequence(x[:, 0])
    with pytest.raises(rnnkit.ShapeError, match=r"state.h must have shape \(2, 4\), got \(3, 4\)"):
        cell.forward_sequence(x, rnnkit.RNNState(torch.zeros(3, H, dtype=F64)))
    with pytest.raises(
        rnnkit.DTypeError, match=r"input dtype torch.float32 does not match the weights' dtype torch.float64"
    ):
        layer(x.float())


def test_bad_options_and_the_dropout_warning():
    with pytest.raises(rnnkit.ConfigError, match=r"num_layers must be a positive int, got 0"):
        rnnkit.MinGRU(D, H, num_layers=0)
    with pytest.raises(rnnkit.ConfigError, match=r"hidden_size must be a positive int, got -1"):
        rnnkit.MinLSTM(D, -1)
    with pytest.raises(rnnkit.ConfigError, match=r"dropout must be a probability in \[0, 1\), got 1.5"):
        rnnkit.MinGRU(D, H, num_layers=2, dropout=1.5)
    with pytest.warns(
        UserWarning, match=r"dropout=0.3 acts between layers, and num_layers=1 has none"
    ) as record:
        rnnkit.MinGRU(D, H, dropout=0.3)
    assert record[0].filename == __file__, "the warning must point at the caller's line"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnkit.MinGRU(D, H, num_layers=2, dropout=0.3)
