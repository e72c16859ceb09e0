"""rnnkit.RNN/LSTM/GRU equal torch.nn.RNN/LSTM/GRU: outputs, final states, gradients, state_dicts.

Both execution paths are held to torch: the fused kernels (``path == "fused"``) and the cell loop
(``path="cell"``). Weights always come from the torch module through ``load_state_dict``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

B, T, D, H = 3, 5, 4, 6
ATOL = {torch.float64: 1e-10, torch.float32: 1e-5}

# kind -> (rnnkit class, torch class, constructor options both take)
KINDS = {
    "rnn_tanh": (rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, nn.LSTM, {}),
    "gru": (rnnkit.GRU, nn.GRU, {}),
}
SHAPES = [(L, bi) for L in (1, 2, 3) for bi in (False, True)]
SHAPE_IDS = [f"L{L}-{'bi' if bi else 'uni'}" for L, bi in SHAPES]


def make_pair(kind, num_layers, bidirectional, path="auto", dtype=torch.float64, **extra):
    """A torch module and an rnnkit module holding the torch module's weights."""
    ours_cls, torch_cls, options = KINDS[kind]
    torch.manual_seed(0)
    ref = torch_cls(
        D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True, **options, **extra
    ).to(dtype)
    ours = ours_cls(D, H, num_layers, bidirectional, path=path, **options, **extra).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def torch_style_state(kind, num_states, dtype):
    """h0 (L*K, B, H) for RNN/GRU, (h0, c0) for LSTM, as torch.nn takes them."""
    h0 = torch.randn(num_states, B, H, dtype=dtype)
    return (h0, torch.randn_like(h0)) if kind == "lstm" else h0


def leaf_copy(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach().clone().requires_grad_()
    return tuple(leaf_copy(s) for s in state)


def as_fields(kind, final):
    """torch's h_n or (h_n, c_n) -> a tuple of fields."""
    return tuple(final) if kind == "lstm" else (final,)


def assert_close(a, b, atol, what=""):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"{what}: max abs difference {err:.3g} > {atol:g}"


def state_grads(state):
    if state is None:
        return ()
    return (state.grad,) if isinstance(state, torch.Tensor) else tuple(s.grad for s in state)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "torch_state"])
@pytest.mark.parametrize("path", ["auto", "cell"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_gradients_match_torch(kind, num_layers, bidirectional, path, given_state, dtype):
    ours, ref = make_pair(kind, num_layers, bidirectional, path, dtype)
    assert ours.path == ("fused" if path == "auto" else "cell")
    atol = ATOL[dtype]
    K = 2 if bidirectional else 1
    torch.manual_seed(1)
    x = torch.randn(B, T, D, dtype=dtype)
    state = torch_style_state(kind, num_layers * K, dtype) if given_state else None
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ours, s_ref = leaf_copy(state), leaf_copy(state)

    out = ours(x_ours, s_ours)
    y_ref, final_ref = ref(x_ref, s_ref)
    assert isinstance(out, rnnkit.RNNOutput)
    assert isinstance(out.state, rnnkit.LSTMState if kind == "lstm" else rnnkit.RNNState)
    finals_ref = as_fields(kind, final_ref)
    assert_close(out.outputs, y_ref, atol, "outputs")
    for name, ours_f, ref_f in zip(out.state._fields, out.state, finals_ref, strict=True):
        assert_close(ours_f, ref_f, atol, f"final state.{name}")

    # the same scalar loss on both: random weights on outputs and every final-state field
    weights = [torch.randn_like(t) for t in (y_ref, *finals_ref)]
    loss_ours = sum((w * t).sum() for w, t in zip(weights, (out.outputs, *out.state), strict=True))
    loss_ref = sum((w * t).sum() for w, t in zip(weights, (y_ref, *finals_ref), strict=True))
    loss_ours.backward()
    loss_ref.backward()
    for name, p in ref.named_parameters():
        mine = getattr(ours, name)
        assert mine.grad is not None, f"no gradient reached {name}"
        assert_close(mine.grad, p.grad, atol, f"grad {name}")
    assert_close(x_ours.grad, x_ref.grad, atol, "grad input")
    for g_ours, g_ref in zip(state_grads(s_ours), state_grads(s_ref), strict=True):
        assert_close(g_ours, g_ref, atol, "grad initial state")


@pytest.mark.parametrize("path", ["auto", "cell"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)], ids=["L1-uni", "L2-bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_torch_packed_sequence(kind, num_layers, bidirectional, path):
    ours, ref = make_pair(kind, num_layers, bidirectional, path)
    torch.manual_seed(2)
    x = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([2, T, 4])  # unsorted on purpose
    state = torch_style_state(kind, num_layers * (2 if bidirectional else 1), torch.float64)

    out = ours(x, state, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y_packed, final_ref = ref(packed, state)
    y_ref, _ = pad_packed_sequence(y_packed, batch_first=True, total_length=T)
    assert_close(out.outputs, y_ref, 1e-10, "outputs")
    for name, ours_f, ref_f in zip(out.state._fields, out.state, as_fields(kind, final_ref), strict=True):
        assert_close(ours_f, ref_f, 1e-10, f"final state.{name}")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_with_torch(kind, num_layers, bidirectional, bias):
    ours_cls, torch_cls, options = KINDS[kind]
    torch.manual_seed(3)
    ours = ours_cls(D, H, num_layers, bidirectional, bias=bias, **options)
    ref = torch_cls(
        D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, batch_first=True, **options
    )
    assert list(ours.state_dict()) == list(ref.state_dict())

    # rnnkit -> torch
    ref.load_state_dict(ours.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(ref.state_dict()[key], value), key
        assert getattr(ours, key) is not None and torch.equal(getattr(ours, key), value), key

    # torch -> rnnkit
    torch.manual_seed(4)
    fresh = torch_cls(
        D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, batch_first=True, **options
    )
    ours.load_state_dict(fresh.state_dict(), strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(getattr(ours, key), value), key
        assert torch.equal(ours.state_dict()[key], value), key


@pytest.mark.parametrize("kind", KINDS)
def test_strict_load_refuses_a_torch_state_dict_of_another_shape(kind):
    ours_cls, torch_cls, options = KINDS[kind]
    ours = ours_cls(D, H, 2, **options)
    deeper = torch_cls(D, H, num_layers=3, batch_first=True, **options)
    with pytest.raises(RuntimeError, match="weight_ih_l2"):
        ours.load_state_dict(deeper.state_dict(), strict=True)


@pytest.mark.parametrize("path", ["auto", "cell"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(2, False), (3, True)], ids=["L2-uni", "L3-bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_between_layers_in_eval_matches_torch(kind, num_layers, bidirectional, path):
    ours, ref = make_pair(kind, num_layers, bidirectional, path, dropout=0.5)
    assert ours.path == ("fused" if path == "auto" else "cell")
    ours.eval()
    ref.eval()
    torch.manual_seed(5)
    x = torch.randn(B, T, D, dtype=torch.float64)
    out = ours(x)
    y_ref, final_ref = ref(x)
    assert_close(out.outputs, y_ref, 1e-10, "outputs")
    for name, ours_f, ref_f in zip(out.state._fields, out.state, as_fields(kind, final_ref), strict=True):
        assert_close(ours_f, ref_f, 1e-10, f"final state.{name}")

    # the dropout is real: in training mode it changes the outputs
    ours.train()
    assert not torch.allclose(ours(x).outputs, out.outputs)
