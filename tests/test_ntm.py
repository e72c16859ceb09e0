"""Neural Turing Machine: the addressing maths by hand, its stability, and the cell inside Recurrent."""

import math

import pytest
import torch
from torch.func import functional_call

from rnnkit.cells import NTMCell
from rnnkit.errors import ConfigError, DTypeError, ShapeError
from rnnkit.functional import (
    address,
    circular_shift,
    content_weights,
    interpolate,
    read_memory,
    sharpen,
    write_memory,
)
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.stacked import Stacked

D, H, N, M = 2, 3, 3, 2  # the tiny NTM of most tests


def tiny_cell(dtype=torch.float64, **options) -> NTMCell:
    torch.manual_seed(0)
    return NTMCell(D, H, memory_rows=N, memory_width=M, **options).to(dtype)


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


# --- the addressing functions against hand computations ------------------------------------------


def test_content_weights_match_a_hand_computation_on_a_3x2_memory():
    memory = t([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (1, 3, 2)
    key, beta = t([[[2.0, 0.0]]]), t([[2.0]])  # the key's length does not matter, only its direction
    cosines = [1.0, 0.0, 1 / math.sqrt(2)]
    e = [math.exp(2.0 * c) for c in cosines]
    expected = t([[[v / sum(e) for v in e]]])
    torch.testing.assert_close(content_weights(memory, key, beta), expected)


def test_interpolation_gate_picks_content_at_one_and_previous_at_zero():
    w_c, w_prev = t([[[0.2, 0.8]]]), t([[[1.0, 0.0]]])
    torch.testing.assert_close(interpolate(w_c, w_prev, t([[1.0]])), w_c)
    torch.testing.assert_close(interpolate(w_c, w_prev, t([[0.0]])), w_prev)
    torch.testing.assert_close(interpolate(w_c, w_prev, t([[0.5]])), t([[[0.6, 0.4]]]))


def test_shift_is_circular():
    last = t([[[0.0, 0.0, 0.0, 1.0]]])  # focus on the last of 4 rows
    torch.testing.assert_close(circular_shift(last, t([[[0.0, 0.0, 1.0]]])), t([[[1.0, 0.0, 0.0, 0.0]]]))
    torch.testing.assert_close(circular_shift(last, t([[[1.0, 0.0, 0.0]]])), t([[[0.0, 0.0, 1.0, 0.0]]]))
    spread = circular_shift(last, t([[[0.25, 0.5, 0.25]]]))  # -1, 0, +1
    torch.testing.assert_close(spread, t([[[0.25, 0.0, 0.25, 0.5]]]))


def test_sharpening_with_gamma_one_is_the_identity_and_gamma_two_squares():
    w = torch.softmax(torch.randn(2, 3, 5, dtype=torch.float64), -1)
    torch.testing.assert_close(sharpen(w, torch.ones(2, 3, dtype=torch.float64)), w)
    squared = sharpen(t([[[0.5, 0.25, 0.25]]]), t([[2.0]]))
    torch.testing.assert_close(squared, t([[[0.25, 0.0625, 0.0625]]]) / 0.375)


def test_write_erases_then_adds_and_read_takes_the_weighted_rows():
    memory = t([[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    w = t([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]])  # two write heads
    erase, add = t([[[1.0, 0.0], [0.0, 0.5]]]), t([[[0.0, 0.0], [2.0, 3.0]]])
    written = write_memory(memory, w, erase, add)
    # row 0: (1 - 0.5, 1); row 1: (1 - 0.5, 1 - 0.5) then + (2, 3); row 2 untouched
    torch.testing.assert_close(written, t([[[0.5, 1.0], [2.5, 3.5], [1.0, 1.0]]]))
    read = read_memory(written, t([[[0.0, 0.25, 0.75]]]))
    torch.testing.assert_close(read, t([[[0.25 * 2.5 + 0.75, 0.25 * 3.5 + 0.75]]]))


# --- stability ------------------------------------------------------------------------------------

EXTREMES = {
    "huge key": dict(key=1e30),
    "zero key": dict(key=0.0),
    "huge beta": dict(beta=1e30),
    "huge gamma": dict(gamma=1e30),
    "zero memory": dict(memory=0.0),
    "huge memory": dict(memory=1e30),
    "one-hot previous": dict(one_hot=True),
}


@pytest.mark.parametrize("case", EXTREMES.values(), ids=EXTREMES.keys())
def test_addressing_stays_a_finite_distribution_at_extremes(case):
    torch.manual_seed(1)
    B, R = 2, 2
    memory = torch.randn(B, 4, 3) * case.get("memory", 1.0)
    key = torch.randn(B, R, 3) * case.get("key", 1.0)
    w_prev = torch.softmax(torch.randn(B, R, 4), -1)
    if case.get("one_hot"):
        w_prev = torch.eye(4)[:R].expand(B, R, 4)
    beta, gamma = torch.full((B, R), case.get("beta", 5.0)), torch.full((B, R), case.get("gamma", 2.0))
    g, shift = torch.full((B, R), 0.5), torch.softmax(torch.randn(B, R, 3), -1)
    w = address(memory, w_prev, key, beta, g, shift, gamma)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, R))


def test_a_huge_key_keeps_its_direction():
    memory, key, beta = torch.randn(2, 4, 3), torch.randn(2, 1, 3), torch.full((2, 1), 3.0)
    torch.testing.assert_close(content_weights(memory, key * 1e30, beta), content_weights(memory, key, beta))


def test_weightings_stay_normalised_and_finite_over_1000_steps():
    cell = tiny_cell(torch.float32, read_heads=2)
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(30.0)  # about a tenth of the head parameters then sit at the +-20 clamps
    state = cell.initial_state(2)
    for x in torch.randn(1000, 2, D).mul(10.0).unbind(0):
        with torch.no_grad():
            y, state = cell(x, state)
        for w in (state.read_weights.view(2, -1, N), state.write_weights.view(2, -1, N)):
            assert torch.isfinite(w).all()
            torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
    assert all(torch.isfinite(f).all() for f in state) and torch.isfinite(y).all()


# --- the cell -------------------------------------------------------------------------------------


def test_gradients_pass_gradcheck_in_float64():
    cell = tiny_cell()
    layer = Recurrent(cell)
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(2, 3, D, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        out, state = functional_call(layer, dict(zip(names, params, strict=True)), (x,))
        return out, state.memory, state.read_weights, state.write_weights

    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    assert torch.autograd.gradcheck(run, (x, *params))


def test_gradients_are_finite_from_the_constant_memory_at_the_default_sizes():
    torch.manual_seed(0)
    cell = NTMCell(4, 16)  # 128 rows of 20, every row 1e-6 at the start
    out, _ = Recurrent(cell)(torch.randn(2, 10, 4))
    out.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in cell.parameters())


def test_initial_state_is_constant_memory_and_weightings_on_row_0():
    state = tiny_cell(read_heads=2).initial_state(2)
    assert [tuple(f.shape) for f in state] == [(2, H), (2, H), (2, N * M), (2, 2 * M), (2, 2 * N), (2, N)]
    torch.testing.assert_close(state.memory, torch.full((2, N * M), 1e-6, dtype=torch.float64))
    torch.testing.assert_close(state.write_weights, t([[1.0, 0.0, 0.0]] * 2))
    reads = read_memory(state.memory.view(2, N, M), state.read_weights.view(2, 2, N))  # (2, 2, M)
    torch.testing.assert_close(state.reads, reads.flatten(1))


def test_runs_stacked_and_bidirectional_with_padding():
    torch.manual_seed(0)
    make = lambda d: NTMCell(d, H, memory_rows=N, memory_width=M)  # noqa: E731
    stack = Stacked([Bidirectional(Recurrent(make(D))), Recurrent(make(2 * H))])
    out, state = stack(torch.randn(2, 4, D), lengths=[4, 2])
    assert out.shape == (2, 4, H) and (out[1, 2:] == 0).all()
    assert state.memory.shape == (3, 2, N * M)


def test_bad_sizes_and_states_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="memory_rows must be a positive int, got 0"):
        NTMCell(D, H, memory_rows=0)
    with pytest.raises(ConfigError, match="shift_range must be a non-negative int, got -1"):
        NTMCell(D, H, shift_range=-1)
    with pytest.warns(UserWarning, match="shift_range=2 allows 5 shifts over only 3 rows"):
        NTMCell(D, H, memory_rows=3, shift_range=2)
    cell = tiny_cell()
    x, state = torch.randn(2, D, dtype=torch.float64), cell.initial_state(2)
    with pytest.raises(ShapeError, match=r"state.memory must have shape \(2, 6\), got \(2, 3, 2\)"):
        cell(x, state._replace(memory=state.memory.view(2, N, M)))
    with pytest.raises(ShapeError, match=r"state must be NTMState\('h', 'c', 'memory'.*got 2 tensors"):
        cell(x, state[:2])
    with pytest.raises(DTypeError, match=r"state\.reads dtype torch\.float32 does not match"):
        cell(x, state._replace(reads=state.reads.float()))
