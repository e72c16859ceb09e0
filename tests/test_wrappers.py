"""Recurrent, Stacked and Bidirectional composed by hand, user cells, and the torch-like layers' surface."""

from __future__ import annotations

import copy
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

import rnnkit

D, H, T = 3, 4, 6
LENGTHS = [6, 2, 4]
MERGES = {
    "concat": lambda a, b: torch.cat([a, b], -1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: (a + b) / 2,
    "mul": lambda a, b: a * b,
}
CELLS = [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell]


def inputs(B: int = 3, features: int = D, seed: int = 1) -> Tensor:
    return torch.randn(B, T, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def flip_within(x: Tensor, lengths: list[int]) -> Tensor:
    """Reverse each sequence of x (B, T, ...) within its length, one by one in Python."""
    out = x.clone()
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n].flip(0)
    return out


# ---------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("merge", list(MERGES))
@pytest.mark.parametrize("cell_class", CELLS)
def test_bidirectional_merge_equals_the_two_directions_run_by_hand(cell_class, merge, lengths):
    torch.manual_seed(0)
    bi = rnnkit.Bidirectional(rnnkit.Recurrent(cell_class(D, H)), merge=merge).double()
    x = inputs()
    out = bi(x, lengths=lengths)

    forward = rnnkit.Recurrent(copy.deepcopy(bi.forward_layer.cell))
    backward = rnnkit.Recurrent(copy.deepcopy(bi.backward_layer.cell), reverse=True)
    fw, bw = forward(x, lengths=lengths), backward(x, lengths=lengths)

    assert out.outputs.shape == (3, T, 2 * H if merge == "concat" else H)
    assert bi.output_size == out.outputs.shape[-1]
    close(out.outputs, MERGES[merge](fw.outputs, bw.outputs))
    assert type(out.state) is cell_class.state_type
    for got, f, b in zip(out.state, fw.state, bw.state, strict=True):
        assert got.shape == (2, 3, H)
        close(got[0], f[0])
        close(got[1], b[0])


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("cell_class", CELLS)
def test_reverse_layer_equals_a_forward_layer_on_flipped_sequences(cell_class, lengths):
    torch.manual_seed(0)
    cell = cell_class(D, H).double()
    x = inputs()
    full = [T] * 3 if lengths is None else lengths
    backward = rnnkit.Recurrent(cell, reverse=True)(x, lengths=lengths)
    forward_on_flipped = rnnkit.Recurrent(cell)(flip_within(x, full), lengths=lengths)
    close(backward.outputs, flip_within(forward_on_flipped.outputs, full))
    for got, want in zip(backward.state, forward_on_flipped.state, strict=True):
        close(got, want)


def test_bidirectional_backward_copy_has_fresh_weights():
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(rnnkit.LSTMCell(D, H))
    bi = rnnkit.Bidirectional(layer)
    assert bi.forward_layer is layer
    assert bi.backward_layer.reverse and not bi.forward_layer.reverse
    assert not torch.equal(bi.forward_layer.cell.weight_ih, bi.backward_layer.cell.weight_ih)
    assert bi.forward_layer.cell.weight_ih.data_ptr() != bi.backward_layer.cell.weight_ih.data_ptr()
    assert len(list(bi.parameters())) == 2 * len(list(layer.parameters()))


def test_bidirectional_keeps_the_cell_options_in_the_backward_copy():
    cell = rnnkit.LSTMCell(D, H, layer_norm=True, zoneout=0.2)
    bi = rnnkit.Bidirectional(rnnkit.Recurrent(cell))
    back = bi.backward_layer.cell
    assert isinstance(back, rnnkit.LSTMCell)
    assert back.layer_norm and back.zoneout == 0.2 and back.ln_c is not None


@pytest.mark.parametrize("merge", list(MERGES))
def test_bidirectional_takes_and_returns_a_two_row_state(merge):
    torch.manual_seed(0)
    bi = rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.GRUCell(D, H)), merge=merge).double()
    x = inputs()
    h0 = torch.randn(2, 3, H, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = bi(x, rnnkit.RNNState(h0))
    fw = bi.forward_layer(x, rnnkit.RNNState(h0[:1]))
    bw = bi.backward_layer(x, rnnkit.RNNState(h0[1:]))
    close(out.outputs, MERGES[merge](fw.outputs, bw.outputs))
    close(out.state.h, torch.cat([fw.state.h, bw.state.h]))


# ---------------------------------------------------------------- Stacked


def test_stacked_residual_adds_the_input_where_sizes_match():
    torch.manual_seed(0)
    l0 = rnnkit.Recurrent(rnnkit.LSTMCell(D, H)).double()  # 3 -> 4: no residual
    l1 = rnnkit.Recurrent(rnnkit.LSTMCell(H, H)).double()  # 4 -> 4: residual
    l2 = rnnkit.Recurrent(rnnkit.LSTMCell(H, H)).double()  # 4 -> 4: residual
    stacked = rnnkit.Stacked([l0, l1, l2], residual=True)
    x = inputs()
    out = stacked(x)

    y0 = l0(x)
    y1 = l1(y0.outputs)
    h1 = y1.outputs + y0.outputs
    y2 = l2(h1)
    close(out.outputs, y2.outputs + h1)
    for field, got in zip(out.state._fields, out.state, strict=True):
        want = torch.cat([getattr(y.state, field) for y in (y0, y1, y2)])
        close(got, want)


def test_stacked_residual_with_padding_adds_only_on_real_steps():
    torch.manual_seed(0)
    l0 = rnnkit.Recurrent(rnnkit.GRUCell(H, H)).double()
    stacked = rnnkit.Stacked([l0], residual=True)
    x = inputs(features=H)
    out = stacked(x, lengths=LENGTHS)
    y = l0(x, lengths=LENGTHS).outputs
    for b, n in enumerate(LENGTHS):
        close(out.outputs[b, :n], y[b, :n] + x[b, :n])
        assert torch.all(out.outputs[b, n:] == 0)


def test_stacked_without_residual_is_plain_chaining():
    torch.manual_seed(0)
    l0 = rnnkit.Recurrent(rnnkit.RNNCell(H, H)).double()
    l1 = rnnkit.Recurrent(rnnkit.RNNCell(H, H)).double()
    x = inputs(features=H)
    out = rnnkit.Stacked([l0, l1])(x)
    close(out.outputs, l1(l0(x).outputs).outputs)
    residual = rnnkit.Stacked([l0, l1], residual=True)(x)
    assert not torch.allclose(residual.outputs, out.outputs)


def test_stacked_dropout_is_inactive_in_eval_and_active_in_training():
    torch.manual_seed(0)
    l0 = rnnkit.Recurrent(rnnkit.LSTMCell(D, H)).double()
    l1 = rnnkit.Recurrent(rnnkit.LSTMCell(H, H)).double()
    stacked = rnnkit.Stacked([l0, l1], dropout=0.5)
    x = inputs()
    chained = l1(l0(x).outputs).outputs

    stacked.eval()
    close(stacked(x).outputs, chained)
    close(stacked(x).outputs, stacked(x).outputs)

    stacked.train()
    torch.manual_seed(1)
    assert not torch.allclose(stacked(x).outputs, chained)


def test_stacked_dropout_does_not_touch_the_input_or_the_last_output():
    # dropout acts between layers only: a one-layer stack is unaffected even in training
    torch.manual_seed(0)
    l0 = rnnkit.Recurrent(rnnkit.GRUCell(D, H)).double()
    stacked = rnnkit.Stacked([l0], dropout=0.9).train()
    x = inputs()
    close(stacked(x).outputs, l0(x).outputs)


@pytest.mark.parametrize("path", ["auto", "cell"])
def test_layer_dropout_is_inactive_in_eval(path):
    torch.manual_seed(0)
    with_dropout = rnnkit.LSTM(D, H, num_layers=2, dropout=0.5, path=path).double().eval()
    without = rnnkit.LSTM(D, H, num_layers=2, path=path).double().eval()
    without.load_state_dict(with_dropout.state_dict())
    x = inputs()
    close(with_dropout(x).outputs, without(x).outputs)
    with_dropout.train()
    assert not torch.allclose(with_dropout(x).outputs, without(x).outputs)


def test_stacked_state_is_split_per_layer():
    torch.manual_seed(0)
    layers = [
        rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.LSTMCell(D, H))),
        rnnkit.Recurrent(rnnkit.LSTMCell(2 * H, H)),
    ]
    stacked = rnnkit.Stacked(layers).double()
    assert stacked.num_states == 3
    x = inputs()
    g = torch.Generator().manual_seed(4)
    state = rnnkit.LSTMState(*(torch.randn(3, 3, H, generator=g, dtype=torch.float64) for _ in range(2)))
    out = stacked(x, state)
    y0 = layers[0](x, rnnkit.LSTMState(state.h[:2], state.c[:2]))
    y1 = layers[1](y0.outputs, rnnkit.LSTMState(state.h[2:], state.c[2:]))
    close(out.outputs, y1.outputs)
    close(out.state.h, torch.cat([y0.state.h, y1.state.h]))
    close(out.state.c, torch.cat([y0.state.c, y1.state.c]))


# ---------------------------------------------------------------- a user cell


class LeakyState(NamedTuple):
    h: Tensor
    total: Tensor


class LeakyCell(nn.Module):
    """A user cell with only the contract: a leaky tanh unit plus a running sum of its inputs."""

    state_type = LeakyState

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.proj = nn.Linear(input_size, hidden_size)

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def initial_state(self, batch_size: int) -> LeakyState:
        zeros = self.proj.weight.new_zeros(batch_size, self.hidden_size)
        return LeakyState(zeros, zeros)

    def forward(self, x: Tensor, state: LeakyState) -> tuple[Tensor, LeakyState]:
        u = self.proj(x)  # (B, H)
        h = 0.5 * state.h + 0.5 * torch.tanh(u + state.total)
        total = state.total + 0.1 * u
        return 2.0 * h, LeakyState(h, total)  # y differs from state.h on purpose


def manual_loop(cell, x: Tensor, state=None):
    """Step cell over x (B, T, D) by hand; returns outputs (B, T, H) and the final state."""
    state = cell.initial_state(x.shape[0]) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = cell(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def test_user_cell_runs_inside_recurrent_like_a_manual_loop():
    torch.manual_seed(0)
    cell = LeakyCell(D, H).double()
    x = inputs()
    out = rnnkit.Recurrent(cell)(x)
    ys, state = manual_loop(cell, x)
    close(out.outputs, ys)
    assert type(out.state) is LeakyState
    close(out.state.h, state.h.unsqueeze(0))
    close(out.state.total, state.total.unsqueeze(0))


def test_user_cell_with_padding_and_reverse():
    torch.manual_seed(0)
    cell = LeakyCell(D, H).double()
    x = inputs()
    fw = rnnkit.Recurrent(cell)(x, lengths=LENGTHS)
    bw = rnnkit.Recurrent(cell, reverse=True)(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        ys, state = manual_loop(cell, x[b : b + 1, :n])
        close(fw.outputs[b, :n], ys[0])
        close(fw.state.total[0, b], state.total[0])
        ys_rev, state_rev = manual_loop(cell, x[b : b + 1, :n].flip(1))
        close(bw.outputs[b, :n], ys_rev[0].flip(0))
        close(bw.state.h[0, b], state_rev.h[0])
        assert torch.all(fw.outputs[b, n:] == 0) and torch.all(bw.outputs[b, n:] == 0)


def test_user_cell_takes_a_given_state_and_streams():
    torch.manual_seed(0)
    cell = LeakyCell(D, H).double()
    layer = rnnkit.Recurrent(cell)
    x = inputs()
    g = torch.Generator().manual_seed(3)
    s0 = LeakyState(*(torch.randn(3, H, generator=g, dtype=torch.float64) for _ in range(2)))
    ys, state = manual_loop(cell, x, s0)
    first = layer(x[:, :2], LeakyState(s0.h[None], s0.total[None]))
    second = layer(x[:, 2:], first.state)
    close(torch.cat([first.outputs, second.outputs], 1), ys)
    close(second.state.total[0], state.total)


def test_user_cell_in_a_stack():
    torch.manual_seed(0)
    c0, c1 = LeakyCell(D, H).double(), LeakyCell(H, H).double()
    stacked = rnnkit.Stacked([rnnkit.Recurrent(c0), rnnkit.Recurrent(c1)])
    x = inputs()
    y0, s0 = manual_loop(c0, x)
    y1, s1 = manual_loop(c1, y0)
    out = stacked(x)
    close(out.outputs, y1)
    close(out.state.h, torch.stack([s0.h, s1.h]))


class EmaCell(nn.Module):
    """A user cell without parameters: an exponential moving average of its input."""

    state_type = rnnkit.RNNState

    def __init__(self, size: int, decay: float = 0.5) -> None:
        super().__init__()
        self.input_size = self.state_size = size
        self.decay = decay

    def initial_state(self, batch_size: int) -> rnnkit.RNNState:
        return rnnkit.RNNState(torch.zeros(batch_size, self.state_size, dtype=torch.float64))

    def forward(self, x: Tensor, state: rnnkit.RNNState) -> tuple[Tensor, rnnkit.RNNState]:
        h = self.decay * state.h + (1 - self.decay) * x
        return h, rnnkit.RNNState(h)


def test_user_cell_without_parameters_runs_inside_recurrent():
    # the documented contract (forward, initial_state, state_size, input_size) asks for no parameters
    cell = EmaCell(D)
    x = inputs()
    out = rnnkit.Recurrent(cell)(x)
    ys, state = manual_loop(cell, x)
    close(out.outputs, ys)
    close(out.state.h[0], state.h)


# ---------------------------------------------------------------- the torch-like layers' surface


@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_default_path_is_fused_and_shows_in_repr(build):
    layer = build(D, H)
    assert layer.path == "fused"
    assert "path='fused'" in repr(layer)


@pytest.mark.parametrize(
    "options",
    [
        {"path": "cell"},
        {"layer_norm": True},
        {"zoneout": 0.1},
        {"residual": True},
        {"layer_norm": True, "path": "auto"},
    ],
    ids=["path_cell", "layer_norm", "zoneout", "residual", "auto_layer_norm"],
)
def test_cell_path_shows_in_repr(options):
    layer = rnnkit.LSTM(D, H, **options)
    assert layer.path == "cell"
    text = repr(layer)
    assert "path='cell'" in text and "path='fused'" not in text
    if options.get("layer_norm"):
        assert "layer_norm=True" in text.splitlines()[1]


def test_explicit_fused_path():
    assert rnnkit.GRU(D, H, num_layers=2, bidirectional=True, path="fused").path == "fused"


def test_repr_names_the_options():
    text = repr(rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.25))
    first = text.splitlines()[1].strip()
    assert first == "3, 4, num_layers=2, bidirectional=True, dropout=0.25, path='fused'"
    assert "nonlinearity='relu'" in repr(rnnkit.RNN(D, H, nonlinearity="relu"))


def test_torch_parameter_names_are_attributes():
    lstm = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True)
    assert lstm.weight_ih_l0.shape == (4 * H, D)
    assert lstm.weight_hh_l0.shape == (4 * H, H)
    assert lstm.bias_ih_l1_reverse.shape == (4 * H,)
    assert lstm.weight_ih_l1.shape == (4 * H, 2 * H)
    # the attribute is the very parameter the layer uses, not a copy
    assert lstm.weight_ih_l0 is lstm.stack.layers[0].forward_layer.cell.weight_ih
    assert lstm.weight_hh_l0_reverse is lstm.stack.layers[0].backward_layer.cell.weight_hh
    with pytest.raises(AttributeError):
        _ = lstm.weight_ih_l2


def test_torch_parameter_attribute_edits_change_the_output():
    torch.manual_seed(0)
    gru = rnnkit.GRU(D, H).double()
    x = inputs()
    before = gru(x).outputs
    with torch.no_grad():
        gru.weight_ih_l0.zero_()
    after = gru(x).outputs
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_fused_and_cell_paths_agree(build, bidirectional):
    torch.manual_seed(0)
    fused = build(D, H, num_layers=2, bidirectional=bidirectional).double()
    cell = build(D, H, num_layers=2, bidirectional=bidirectional, path="cell").double()
    cell.load_state_dict(fused.state_dict())
    x = inputs()
    for lengths in (None, LENGTHS):
        a, b = fused(x, lengths=lengths), cell(x, lengths=lengths)
        torch.testing.assert_close(b.outputs, a.outputs, rtol=1e-9, atol=1e-10)
        for got, want in zip(b.state, a.state, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "ours_class, theirs_class",
    [(rnnkit.LSTM, nn.LSTM), (rnnkit.GRU, nn.GRU), (rnnkit.RNN, nn.RNN)],
    ids=["lstm", "gru", "rnn"],
)
def test_state_dict_round_trips_with_torch(ours_class, theirs_class):
    torch.manual_seed(0)
    ours = ours_class(D, H, num_layers=2, bidirectional=True).double()
    theirs = theirs_class(D, H, num_layers=2, bidirectional=True, batch_first=True).double()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = inputs()
    out, _ = theirs(x)
    torch.testing.assert_close(ours(x).outputs, out, rtol=1e-9, atol=1e-10)


def test_initial_state_shape_and_type():
    lstm = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True)
    state = lstm.initial_state(3)
    assert isinstance(state, rnnkit.LSTMState)
    assert state.h.shape == state.c.shape == (4, 3, H)
    assert torch.all(state.h == 0)
    assert isinstance(rnnkit.GRU(D, H).initial_state(2), rnnkit.RNNState)
