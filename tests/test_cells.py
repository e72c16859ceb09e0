"""Cells and their options: reference steps, torch.nn cells, initialisers, layer norm, initial states,
gradients, recurrent dropout and zoneout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells import INITIALISERS
from rnnkit.functional import elman_step, gru_step, lstm_step

B, D, H = 3, 4, 5
F64 = torch.float64

# kind -> (rnnkit cell class, torch cell class, options both take)
CELLS = {
    "rnn_tanh": (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTMCell, nn.LSTMCell, {}),
    "gru": (rnnkit.GRUCell, nn.GRUCell, {}),
}
LAYERS = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}
CELL_CLASSES = {"rnn": rnnkit.RNNCell, "lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell}


def randomise(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Every parameter to N(0, scale^2) (layer-norm gains to 1 + N(0, scale^2)), so none is trivial."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.startswith("ln_") and name.endswith("weight") else 0.0
            p.copy_(base + scale * torch.randn_like(p))
    return module


def cell_pair(kind, bias=True):
    ours_cls, torch_cls, options = CELLS[kind]
    torch.manual_seed(0)
    ref = torch_cls(D, H, bias=bias, **options).double()
    ours = ours_cls(D, H, bias=bias, **options).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def random_state(kind, batch_size=B):
    h = torch.randn(batch_size, H, dtype=F64)
    return rnnkit.LSTMState(h, torch.randn_like(h)) if kind == "lstm" else rnnkit.RNNState(h)


# --- the reference steps and the cells against torch.nn's cells -----------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", CELLS)
def test_functional_step_equals_torch_cell(kind, bias):
    _, torch_cls, options = CELLS[kind]
    torch.manual_seed(1)
    ref = torch_cls(D, H, bias=bias, **options).double()
    x = torch.randn(B, D, dtype=F64)
    weights = (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    state = random_state(kind)
    with torch.no_grad():
        if kind == "lstm":
            got, want = lstm_step(x, tuple(state), *weights), ref(x, tuple(state))
        elif kind == "gru":
            got, want = (gru_step(x, state.h, *weights),), (ref(x, state.h),)
        else:
            got, want = (elman_step(x, state.h, *weights, options["nonlinearity"]),), (ref(x, state.h),)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", CELLS)
def test_cell_state_dict_round_trip_with_torch_cell(kind, bias):
    ours, ref = cell_pair(kind, bias)
    assert list(ours.state_dict()) == list(ref.state_dict())
    _, torch_cls, options = CELLS[kind]
    back = torch_cls(D, H, bias=bias, **options).double()
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in ref.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
        assert torch.equal(ours.state_dict()[key], value), key


@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("kind", CELLS)
def test_cell_forward_equals_torch_cell(kind, given_state):
    ours, ref = cell_pair(kind)
    torch.manual_seed(2)
    x = torch.randn(B, D, dtype=F64)
    state = random_state(kind) if given_state else None
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()

    y, new = ours(x_ours, state)
    want = ref(x_ref, None if state is None else (tuple(state) if kind == "lstm" else state.h))
    want = want if kind == "lstm" else (want,)
    assert isinstance(new, rnnkit.LSTMState if kind == "lstm" else rnnkit.RNNState)
    assert y is new.h or torch.equal(y, new.h)
    for got, w in zip(new, want, strict=True):
        torch.testing.assert_close(got, w, atol=1e-12, rtol=0)

    weights = [torch.randn_like(w) for w in want]
    sum((w * t).sum() for w, t in zip(weights, new, strict=True)).backward()
    sum((w * t).sum() for w, t in zip(weights, want, strict=True)).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, name).grad, p.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-12, rtol=0)


def test_cell_accepts_torch_style_state():
    ours, _ = cell_pair("lstm")
    x, (h, c) = torch.randn(B, D, dtype=F64), random_state("lstm")
    _, from_tuple = ours(x, (h, c))
    _, from_named = ours(x, rnnkit.LSTMState(h, c))
    assert torch.equal(from_tuple.h, from_named.h) and torch.equal(from_tuple.c, from_named.c)
    gru, _ = cell_pair("gru")
    _, from_tensor = gru(x, h)
    _, from_named = gru(x, rnnkit.RNNState(h))
    assert torch.equal(from_tensor.h, from_named.h)


# --- forget-gate bias -------------------------------------------------------------------------------


def test_lstm_forget_bias_defaults_to_one_on_bias_ih():
    cell = rnnkit.LSTMCell(D, H)
    assert torch.all(cell.bias_ih[H : 2 * H] == 1.0)
    assert torch.all(cell.bias_hh[H : 2 * H] == 0.0)
    assert torch.all(cell.bias_ih[H : 2 * H] + cell.bias_hh[H : 2 * H] == 1.0)
    # the other gates keep torch's initialisation
    others = torch.cat([cell.bias_ih[:H], cell.bias_ih[2 * H :], cell.bias_hh[:H], cell.bias_hh[2 * H :]])
    assert others.abs().max() <= 1 / math.sqrt(H) and others.abs().max() > 0


@pytest.mark.parametrize("layer_norm", [False, True])
def test_lstm_forget_bias_survives_reset_and_layers(layer_norm):
    cell = rnnkit.LSTMCell(D, H, forget_bias=2.5, layer_norm=layer_norm)
    cell.reset_parameters()
    assert torch.all(cell.bias_ih[H : 2 * H] == 2.5) and torch.all(cell.bias_hh[H : 2 * H] == 0)
    layer = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, forget_bias=2.5)
    for cell in layer.cells:
        assert torch.all(cell.bias_ih[H : 2 * H] == 2.5) and torch.all(cell.bias_hh[H : 2 * H] == 0)


@pytest.mark.parametrize("init", ["default", "xavier"])
def test_lstm_forget_bias_none_keeps_the_initialisers_values(init):
    torch.manual_seed(3)
    kept = rnnkit.LSTMCell(D, H, forget_bias=None, init=init)
    torch.manual_seed(3)
    set_to_one = rnnkit.LSTMCell(D, H, init=init)
    assert torch.equal(kept.weight_ih, set_to_one.weight_ih)
    forget = slice(H, 2 * H)
    for name in ("bias_ih", "bias_hh"):
        mine, other = getattr(kept, name), getattr(set_to_one, name)
        assert torch.equal(mine[:H], other[:H]) and torch.equal(mine[2 * H :], other[2 * H :])
        if init == "default":
            assert mine[forget].abs().max() <= 1 / math.sqrt(H)
            assert not torch.all(mine[forget] == mine[forget][0])
        else:
            assert torch.all(mine[forget] == 0)


def test_lstm_forget_bias_without_bias_is_harmless():
    cell = rnnkit.LSTMCell(D, H, bias=False)
    assert cell.bias_ih is None and cell.bias_hh is None
    y, _ = cell(torch.randn(B, D))
    assert y.shape == (B, H)


# --- initialisers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CELL_CLASSES)
@pytest.mark.parametrize("init", INITIALISERS)
def test_every_initialiser_builds_a_working_cell_and_layer(init, kind):
    torch.manual_seed(4)
    cell = CELL_CLASSES[kind](D, H, init=init)
    assert cell.init == init
    y, _ = cell(torch.randn(B, D))
    assert y.shape == (B, H) and torch.isfinite(y).all()
    assert all(torch.isfinite(p).all() for p in cell.parameters())
    layer = LAYERS[kind](D, H, num_layers=2, bidirectional=True, init=init)
    for c in layer.cells:
        assert c.init == init
    out = layer(torch.randn(B, 7, D))
    assert out.outputs.shape == (B, 7, 2 * H) and torch.isfinite(out.outputs).all()


@pytest.mark.parametrize("kind", CELL_CLASSES)
def test_orthogonal_init_makes_each_recurrent_block_orthogonal(kind):
    torch.manual_seed(5)
    h = 8
    cell = CELL_CLASSES[kind](3, h, init="orthogonal", **({"forget_bias": None} if kind == "lstm" else {}))
    blocks = cell.weight_hh.detach().double().chunk(cell.num_gates, 0)
    assert len(blocks) == cell.num_gates
    eye = torch.eye(h, dtype=F64)
    for block in blocks:
        assert block.shape == (h, h)
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
        torch.testing.assert_close(block.T @ block, eye, atol=1e-5, rtol=0)
    assert not torch.allclose(blocks[0], blocks[-1]) or cell.num_gates == 1
    assert torch.all(cell.bias_ih == 0) and torch.all(cell.bias_hh == 0)


def _check_uniform_blocks(weight, num_gates, bound):
    """Each gate block is U(-bound, bound): within the bound, reaching near it, std bound/sqrt(3)."""
    for block in weight.detach().chunk(num_gates, 0):
        assert block.abs().max() <= bound * (1 + 1e-6)
        assert block.abs().max() > 0.9 * bound
        assert block.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("init", ["xavier", "glorot"])
def test_xavier_init_per_gate_block_and_zero_biases(kind, init):
    torch.manual_seed(6)
    d, h = 40, 48
    cell = CELL_CLASSES[kind](d, h, init=init)
    G = cell.num_gates
    _check_uniform_blocks(cell.weight_ih, G, math.sqrt(6 / (d + h)))  # fan_in D, fan_out H per block
    _check_uniform_blocks(cell.weight_hh, G, math.sqrt(6 / (h + h)))
    assert torch.all(cell.bias_ih == 0) and torch.all(cell.bias_hh == 0)


def test_xavier_init_on_lstm_zero_biases_but_the_forget_gate():
    torch.manual_seed(6)
    d, h = 40, 48
    cell = rnnkit.LSTMCell(d, h, init="xavier")
    _check_uniform_blocks(cell.weight_ih, 4, math.sqrt(6 / (d + h)))
    _check_uniform_blocks(cell.weight_hh, 4, math.sqrt(6 / (h + h)))
    assert torch.all(cell.bias_hh == 0)
    assert torch.all(cell.bias_ih[h : 2 * h] == 1)
    assert torch.all(cell.bias_ih[:h] == 0) and torch.all(cell.bias_ih[2 * h :] == 0)


@pytest.mark.parametrize("kind", CELL_CLASSES)
@pytest.mark.parametrize("init", ["he", "kaiming"])
def test_he_init_has_std_sqrt_2_over_fan_in_and_zero_biases(kind, init):
    torch.manual_seed(7)
    d, h = 40, 48
    cell = CELL_CLASSES[kind](d, h, init=init, **({"forget_bias": None} if kind == "lstm" else {}))
    G = cell.num_gates
    for weight, fan_in in ((cell.weight_ih, d), (cell.weight_hh, h)):
        _check_uniform_blocks(weight, G, math.sqrt(6 / fan_in))
        assert weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    assert torch.all(cell.bias_ih == 0) and torch.all(cell.bias_hh == 0)


@pytest.mark.parametrize(("alias", "name"), [("glorot", "xavier"), ("kaiming", "he")])
def test_initialiser_aliases_give_the_same_weights(alias, name):
    torch.manual_seed(8)
    a = rnnkit.GRUCell(D, H, init=alias)
    torch.manual_seed(8)
    b = rnnkit.GRUCell(D, H, init=name)
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), key


@pytest.mark.parametrize("kind", CELL_CLASSES)
def test_default_init_within_one_over_sqrt_h(kind):
    torch.manual_seed(9)
    h = 16
    cell = CELL_CLASSES[kind](D, h, **({"forget_bias": None} if kind == "lstm" else {}))
    bound = 1 / math.sqrt(h)
    for name, p in cell.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.abs().max() > 0.5 * bound, name  # spread over the range, not all zero


def test_unknown_initialiser_is_a_config_error_with_a_suggestion():
    with pytest.raises(rnnkit.ConfigError, match=r"unknown initialiser 'xavir'.*Did you mean 'xavier'\?"):
        rnnkit.LSTMCell(D, H, init="xavir")


# --- layer norm (Ba et al. 2016) --------------------------------------------------------------------


def _layer_norm(v, gain, bias=None, eps=1e-5):
    """Hand-written LN over the last axis: (v - mean) / sqrt(var + eps) * gain (+ bias)."""
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    out = (v - mu) / torch.sqrt(var + eps) * gain
    return out if bias is None else out + bias


def _ln_lstm_reference(cell, x, h, c):
    """Ba et al. 2016, eq. 20-22: LN on W_ih x and W_hh h (gain, no bias), biases after; LN on c'."""
    gates = (
        _layer_norm(x @ cell.weight_ih.T, cell.ln_ih.weight)
        + cell.bias_ih
        + _layer_norm(h @ cell.weight_hh.T, cell.ln_hh.weight)
        + cell.bias_hh
    )  # (B, 4H)
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(_layer_norm(c, cell.ln_c.weight, cell.ln_c.bias))
    return h, c


def test_layer_norm_lstm_cell_matches_ba_et_al():
    torch.manual_seed(10)
    cell = randomise(rnnkit.LSTMCell(D, H, layer_norm=True).double())
    assert cell.ln_ih.bias is None and cell.ln_hh.bias is None and cell.ln_c.bias is not None
    assert not torch.allclose(cell.ln_ih.weight, torch.ones(4 * H, dtype=F64))
    x, (h, c) = torch.randn(B, D, dtype=F64), random_state("lstm")
    y, new = cell(x, (h, c))
    want_h, want_c = _ln_lstm_reference(cell, x, h, c)
    torch.testing.assert_close(new.h, want_h, atol=1e-12, rtol=0)
    torch.testing.assert_close(new.c, want_c, atol=1e-12, rtol=0)
    torch.testing.assert_close(y, want_h, atol=1e-12, rtol=0)
    # the gains and bias matter: the plain LSTM step differs
    plain_h, _ = lstm_step(x, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert not torch.allclose(new.h, plain_h)


def test_layer_norm_lstm_layer_matches_ba_et_al_over_a_sequence():
    torch.manual_seed(11)
    layer = randomise(rnnkit.LSTM(D, H, layer_norm=True).double())
    assert layer.path == "cell"
    cell = layer.cells[0]
    x = torch.randn(B, 6, D, dtype=F64)
    h0, c0 = random_state("lstm")
    out = layer(x, (h0[None], c0[None]))
    h, c, ys = h0, c0, []
    for x_t in x.unbind(1):
        h, c = _ln_lstm_reference(cell, x_t, h, c)
        ys.append(h)
    torch.testing.assert_close(out.outputs, torch.stack(ys, 1), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.state.h[0], h, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.state.c[0], c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_layer_norm_rnn_and_gru_cells_normalise_both_projections(kind):
    torch.manual_seed(12)
    cell = randomise(CELL_CLASSES[kind](D, H, layer_norm=True).double())
    x, h = torch.randn(B, D, dtype=F64), torch.randn(B, H, dtype=F64)
    gx = _layer_norm(x @ cell.weight_ih.T, cell.ln_ih.weight) + cell.bias_ih
    gh = _layer_norm(h @ cell.weight_hh.T, cell.ln_hh.weight) + cell.bias_hh
    if kind == "gru":
        (xr, xz, xn), (hr, hz, hn) = gx.chunk(3, -1), gh.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        want = (1 - z) * torch.tanh(xn + r * hn) + z * h
    else:
        want = torch.tanh(gx + gh)
    _, new = cell(x, h)
    torch.testing.assert_close(new.h, want, atol=1e-12, rtol=0)


# --- learned initial state --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CELL_CLASSES)
def test_learned_initial_state_expands_the_vectors(kind):
    cell = CELL_CLASSES[kind](D, H, learn_initial_state=True)
    fields = ("h", "c") if kind == "lstm" else ("h",)
    for f in fields:
        p = getattr(cell, f"initial_{f}")
        assert isinstance(p, nn.Parameter) and p.shape == (H,) and torch.all(p == 0)
        with torch.no_grad():
            p.copy_(torch.randn(H))
    state = cell.initial_state(7)
    assert state._fields == fields
    for f in fields:
        assert getattr(state, f).shape == (7, H)
        assert torch.equal(getattr(state, f), getattr(cell, f"initial_{f}").expand(7, H))


def test_learned_initial_state_gets_gradients_through_an_lstm_layer():
    torch.manual_seed(13)
    layer = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, learn_initial_state=True).double()
    assert layer.path == "cell"
    for cell in layer.cells:
        with torch.no_grad():
            cell.initial_h.normal_()
            cell.initial_c.normal_()
    state = layer.initial_state(B)
    assert state.h.shape == state.c.shape == (4, B, H)
    torch.testing.assert_close(state.c[3], layer.cells[3].initial_c.expand(B, H).detach(), atol=0, rtol=0)

    x = torch.randn(B, 5, D, dtype=F64)
    out = layer(x)
    torch.testing.assert_close(out.outputs, layer(x, layer.initial_state(B)).outputs, atol=1e-12, rtol=0)
    zeros = tuple(torch.zeros(4, B, H, dtype=F64) for _ in range(2))
    assert not torch.allclose(out.outputs, layer(x, zeros).outputs)

    (out.outputs.square().sum() + out.state.c.sum()).backward()
    for i, cell in enumerate(layer.cells):
        for name in ("initial_h", "initial_c"):
            grad = getattr(cell, name).grad
            assert grad is not None and grad.abs().sum() > 0, f"cell {i} {name}"


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_learned_initial_state_gets_gradients_through_recurrent(kind):
    torch.manual_seed(14)
    layer = rnnkit.Recurrent(CELL_CLASSES[kind](D, H, learn_initial_state=True))
    layer(torch.randn(B, 4, D)).outputs.sum().backward()
    grad = layer.cell.initial_h.grad
    assert grad is not None and grad.shape == (H,) and grad.abs().sum() > 0


# --- gradcheck on the cell path ---------------------------------------------------------------------

GRADCHECK_CASES = {
    "plain": ({}, 1, False, None, ("weight_hh_l0", "bias_ih_l0")),
    "layer_norm": ({"layer_norm": True}, 1, False, None, ("weight_hh_l0", "ln_hh_weight_l0")),
    "two_layers": ({}, 2, False, None, ("weight_ih_l1",)),
    "bidirectional": ({}, 1, True, None, ("weight_hh_l0_reverse",)),
    "lengths": ({}, 1, False, [3, 1], ("weight_hh_l0",)),
    "bi_ln_lengths": ({"layer_norm": True}, 1, True, [1, 3], ("weight_hh_l0_reverse", "ln_ih_weight_l0")),
    "zoneout_eval": ({"zoneout": 0.3}, 1, False, None, ("weight_hh_l0",)),
}


def _internal_name(module: nn.Module, param: torch.Tensor) -> str:
    return next(name for name, p in module.named_parameters() if p is param)


@pytest.mark.parametrize("case", GRADCHECK_CASES)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_gradcheck_cell_path(kind, case):
    options, num_layers, bidirectional, lengths, params = GRADCHECK_CASES[case]
    torch.manual_seed(15)
    layer = LAYERS[kind](2, 3, num_layers, bidirectional, path="cell", **options).double()
    if kind == "lstm" or options.get("layer_norm"):
        randomise(layer)
    layer.eval()  # zoneout is deterministic (its expectation) in eval mode
    assert layer.path == "cell"
    names = [_internal_name(layer, getattr(layer, n)) for n in params]

    def fn(x, *weights):
        out = torch.func.functional_call(
            layer, dict(zip(names, weights, strict=True)), (x,), {"lengths": lengths}
        )
        return (out.outputs, *out.state)

    x = torch.randn(2, 3, 2, dtype=F64, requires_grad=True)
    weights = [getattr(layer, n).detach().clone().requires_grad_() for n in params]
    assert torch.autograd.gradcheck(fn, (x, *weights))


# --- recurrent dropout (Gal & Ghahramani 2016) ------------------------------------------------------


def test_recurrent_dropout_mask_semantics():
    p = 0.25
    cell = rnnkit.LSTMCell(D, H, recurrent_dropout=p).double()
    torch.manual_seed(16)
    mask = cell.recurrent_dropout_mask(400)
    assert mask.shape == (400, H) and mask.dtype == F64
    values = set(mask.unique().tolist())
    assert values == {0.0, 1 / (1 - p)}
    assert mask.mean().item() == pytest.approx(1.0, abs=0.05)
    cell.eval()
    assert cell.recurrent_dropout_mask(400) is None
    assert rnnkit.LSTMCell(D, H).recurrent_dropout_mask(400) is None


def _counting_rnn(p):
    """relu RNN with h' = relu(1 + m * h): a unit whose mask is 0 stays at 1, kept ones grow."""
    cell = rnnkit.RNNCell(1, H, nonlinearity="relu", recurrent_dropout=p).double()
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.bias_ih.fill_(1.0)
        cell.weight_hh.copy_(torch.eye(H))
        cell.bias_hh.zero_()
    return rnnkit.Recurrent(cell)


def _implied_masks(h):
    """h (B, T, H) of the counting RNN -> the mask used at each step t >= 1, (B, T-1, H)."""
    return (h[:, 1:] - 1) / h[:, :-1]


def test_recurrent_dropout_uses_one_mask_per_sequence_in_training():
    p = 0.5
    layer = _counting_rnn(p).train()
    torch.manual_seed(17)
    x = torch.ones(8, 10, 1, dtype=F64)
    masks = _implied_masks(layer(x).outputs)  # (B, T-1, H)
    first = masks[:, :1]
    torch.testing.assert_close(masks, first.expand_as(masks), atol=1e-9, rtol=0)  # same at every step
    assert set(first.round(decimals=6).unique().tolist()) == {0.0, 1 / (1 - p)}  # both occur
    assert not torch.equal(first[0], first[1])  # each sequence draws its own mask
    again = _implied_masks(layer(x).outputs)[:, :1]
    assert not torch.equal(first, again)  # and a new one for every batch


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recurrent_dropout_in_eval_equals_the_model_without_it(kind):
    torch.manual_seed(18)
    plain = LAYERS[kind](D, H, num_layers=2, bidirectional=True).double()
    dropped = LAYERS[kind](D, H, num_layers=2, bidirectional=True, recurrent_dropout=0.5).double()
    dropped.load_state_dict(plain.state_dict(), strict=True)
    assert dropped.path == "cell"
    x = torch.randn(B, 6, D, dtype=F64)
    dropped.eval()
    want = plain.eval()(x)
    got = dropped(x)
    torch.testing.assert_close(got.outputs, want.outputs, atol=1e-12, rtol=0)
    for g, w in zip(got.state, want.state, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
    dropped.train()
    assert not torch.allclose(dropped(x).outputs, want.outputs)  # and it does act in training


# --- zoneout (Krueger et al. 2016) ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_zoneout_in_eval_is_the_expectation(kind):
    p = 0.3
    torch.manual_seed(19)
    layer = LAYERS[kind](D, H, zoneout=p).double().eval()
    assert layer.path == "cell"
    cell = layer.cells[0]
    x = torch.randn(B, 6, D, dtype=F64)
    state = random_state(kind)
    out = layer(x, tuple(f[None] for f in state))

    plain = CELL_CLASSES[kind](D, H).double()
    plain.load_state_dict(cell.state_dict(), strict=True)
    ys = []
    for x_t in x.unbind(1):
        _, new = plain(x_t, state)
        state = type(state)(*(p * old + (1 - p) * n for old, n in zip(state, new, strict=True)))
        ys.append(state.h)
    torch.testing.assert_close(out.outputs, torch.stack(ys, 1), atol=1e-12, rtol=0)
    for got, want in zip(out.state, state, strict=True):
        torch.testing.assert_close(got[0], want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_zoneout_near_one_in_training_keeps_the_state(kind):
    torch.manual_seed(20)
    layer = LAYERS[kind](D, H, zoneout=0.999999).double().train()
    state = random_state(kind)
    out = layer(torch.randn(B, 6, D, dtype=F64), tuple(f[None] for f in state))
    torch.testing.assert_close(out.outputs, state.h[:, None].expand(B, 6, H), atol=1e-12, rtol=0)
    for got, want in zip(out.state, state, strict=True):
        torch.testing.assert_close(got[0], want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_zoneout_in_training_keeps_or_updates_each_unit(kind):
    torch.manual_seed(21)
    cell = CELL_CLASSES[kind](D, H, zoneout=0.5).double().train()
    plain = CELL_CLASSES[kind](D, H).double()
    plain.load_state_dict(cell.state_dict(), strict=True)
    x, state = torch.randn(40, D, dtype=F64), random_state(kind, 40)
    _, got = cell(x, state)
    _, new = plain(x, state)
    for g, old, n in zip(got, state, new, strict=True):
        kept, updated = torch.isclose(g, old, rtol=0, atol=1e-12), torch.isclose(g, n, rtol=0, atol=1e-12)
        assert torch.all(kept | updated)
        assert kept.double().mean().item() == pytest.approx(0.5, abs=0.1)


def test_invalid_probabilities_are_config_errors():
    with pytest.raises(rnnkit.ConfigError, match=r"zoneout must be a probability in \[0, 1\), got 1.0"):
        rnnkit.GRUCell(D, H, zoneout=1.0)
    with pytest.raises(rnnkit.ConfigError, match=r"recurrent_dropout must be a probability in \[0, 1\)"):
        rnnkit.LSTMCell(D, H, recurrent_dropout=-0.1)
