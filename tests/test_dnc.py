"""Differentiable Neural Computer: allocation and temporal links by hand, their invariants over long runs,
the cell's gradients, the cell inside Recurrent, and `cell: dnc` as an encoder and in a model."""

from pathlib import Path

import pytest
import torch
from torch.func import functional_call

import rnnkit
from rnnkit.cells import DNCCell, DNCState
from rnnkit.config import validate
from rnnkit.errors import ConfigError, DTypeError, ShapeError
from rnnkit.functional import (
    allocation_weights,
    memory_retention,
    read_weighting,
    temporal_weights,
    update_link,
    update_precedence,
    update_usage,
    write_weighting,
)
from rnnkit.layers import DNCEncoder
from rnnkit.layers.recurrent import Recurrent
from rnnkit.models import build_model
from rnnkit.models.encoder import MemoryEncoderConfig, build_encoder
from rnnkit.run import load_run_config
from rnnkit.tasks import get_task

D, H, N, M, R = 2, 5, 4, 3, 2  # the tiny DNC of most tests
EPS = 1e-6
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_cell(dtype=torch.float64, seed=0) -> DNCCell:
    torch.manual_seed(seed)
    return DNCCell(D, H, memory_rows=N, memory_width=M, read_heads=R).to(dtype)


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


# --- the memory functions against hand computations ----------------------------------------------


def test_allocation_takes_the_least_used_rows_first_ties_in_index_order():
    # sorted: row 1 (0.2), row 2 (0.2: a tie, after row 1), row 0 (0.5), row 3 (0.9)
    usage = t([[0.5, 0.2, 0.2, 0.9]])
    expected = t([[0.5 * 0.2 * 0.2, 0.8, 0.8 * 0.2, 0.1 * 0.5 * 0.2 * 0.2]])
    torch.testing.assert_close(allocation_weights(usage, eps=0.0), expected)
    torch.testing.assert_close(allocation_weights(usage, eps=0.0).sum(), t(1 - 0.5 * 0.2 * 0.2 * 0.9))


def test_allocation_of_unused_rows_goes_to_the_first_with_the_eps_lift():
    usage = t([[0.4, 0.0, 0.8, 0.0]])
    torch.testing.assert_close(allocation_weights(usage, eps=0.0), t([[0.0, 1.0, 0.0, 0.0]]))
    u = [EPS + (1 - EPS) * x for x in (0.4, 0.0, 0.8, 0.0)]  # sorted: rows 1, 3, 0, 2
    expected = [(1 - u[0]) * u[1] * u[3], 1 - u[1], (1 - u[2]) * u[1] * u[3] * u[0], (1 - u[3]) * u[1]]
    torch.testing.assert_close(allocation_weights(usage), t([expected]))
    torch.testing.assert_close(allocation_weights(torch.ones(1, 3)), torch.zeros(1, 3))  # a full memory


def test_allocation_gradients_flow_through_the_usage_values():
    usage = t([[0.3, 0.7, 0.1, 0.5], [0.9, 0.2, 0.6, 0.4]]).requires_grad_()
    assert torch.autograd.gradcheck(allocation_weights, (usage,))


def test_usage_rises_where_written_and_falls_where_freed():
    free, w_read = t([[0.5, 1.0]]), t([[[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]]])
    psi = memory_retention(free, w_read)
    torch.testing.assert_close(psi, t([[(1 - 0.1) * 1.0, (1 - 0.4) * (1 - 0.5), 1.0 * (1 - 0.5)]]))
    usage, w_write = t([[0.5, 0.0, 1.0]]), t([[0.5, 0.5, 0.0]])
    # u + w - u w = (0.75, 0.5, 1.0), then times psi = (0.9, 0.3, 0.5)
    torch.testing.assert_close(update_usage(usage, w_write, psi), t([[0.675, 0.15, 0.5]]))


def test_write_weighting_mixes_allocation_and_content_under_the_write_gate():
    w = write_weighting(t([[0.8, 0.2, 0.0]]), t([[0.1, 0.1, 0.8]]), t([0.5]), t([0.5]))
    torch.testing.assert_close(w, t([[0.225, 0.075, 0.2]]))
    torch.testing.assert_close(
        write_weighting(t([[0.8, 0.2, 0.0]]), t([[0.1, 0.1, 0.8]]), t([1.0]), t([0.0])), t([[0.0] * 3])
    )


def test_link_and_precedence_match_a_hand_computation_on_3_rows():
    link = t([[[0.0, 0.1, 0.2], [0.3, 0.0, 0.0], [0.4, 0.5, 0.0]]])
    w, p = t([[0.0, 0.6, 0.3]]), t([[0.2, 0.0, 0.5]])
    # L[i, j] = (1 - w[i] - w[j]) L[i, j] + w[i] p[j], diagonal 0
    expected = t(
        [
            [
                [0.0, 0.4 * 0.1, 0.7 * 0.2],
                [0.4 * 0.3 + 0.6 * 0.2, 0.0, 0.6 * 0.5],
                [0.7 * 0.4 + 0.3 * 0.2, 0.1 * 0.5, 0.0],
            ]
        ]
    )
    new = update_link(link, w, p)
    torch.testing.assert_close(new, expected)
    torch.testing.assert_close(update_precedence(p, w), t([[0.1 * 0.2, 0.6, 0.1 * 0.5 + 0.3]]))
    forward, backward = temporal_weights(new, t([[[1.0, 0.0, 0.0]]]))  # a head that read row 0
    torch.testing.assert_close(forward, new[:, :, 0].unsqueeze(1))  # rows written after row 0
    torch.testing.assert_close(backward, new[:, 0, :].unsqueeze(1))  # rows written before it


def test_links_record_the_order_of_one_hot_writes():
    link, p = torch.zeros(1, 3, 3), torch.zeros(1, 3)
    for row in (2, 0, 1):  # write rows 2, 0, 1 in turn
        w = torch.eye(3)[row].unsqueeze(0)
        link, p = update_link(link, w, p), update_precedence(p, w)
    after = t([[0, 0, 1], [1, 0, 0], [0, 0, 0]], torch.float32)  # row 0 came after row 2, row 1 after row 0
    torch.testing.assert_close(link[0], after)
    torch.testing.assert_close(p, t([[0.0, 1.0, 0.0]], torch.float32))
    forward, backward = temporal_weights(link, torch.eye(3)[2].view(1, 1, 3))  # a head on row 2
    assert forward.argmax() == 0 and backward.sum() == 0  # next comes row 0; nothing came before


def test_read_modes_pick_backward_content_or_forward():
    b, c, f = (torch.rand(1, 2, 3, dtype=torch.float64) for _ in range(3))
    for k, expected in enumerate((b, c, f)):
        modes = torch.eye(3, dtype=torch.float64)[k].expand(1, 2, 3)
        torch.testing.assert_close(read_weighting(b, c, f, modes), expected)


# --- stability ------------------------------------------------------------------------------------


def check_invariants(state: DNCState, B: int, tol: float = 1e-5) -> None:
    assert all(torch.isfinite(f).all() for f in state)
    link = state.link.view(B, N, N)
    assert (link.diagonal(dim1=-2, dim2=-1) == 0).all() and (link >= -tol).all()
    assert (link.sum(-1) <= 1 + tol).all() and (link.sum(-2) <= 1 + tol).all()
    for w in (state.read_weights.view(B, R, N), state.write_weights, state.precedence):
        assert (w >= -tol).all() and (w.sum(-1) <= 1 + tol).all()
    assert (state.usage >= 0).all() and (state.usage <= 1 + tol).all()


@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["random", "extreme"])
def test_weightings_and_links_stay_in_range_and_finite_over_1000_steps(scale):
    cell, B = tiny_cell(torch.float32), 2
    state = cell.initial_state(B)
    with torch.no_grad():
        for x in torch.randn(1000, B, D).mul(scale).unbind(0):
            y, state = cell(x, state)
            check_invariants(state, B)
    assert torch.isfinite(y).all()


# --- the cell -------------------------------------------------------------------------------------


def test_gradients_pass_gradcheck_in_float64():
    """Fast gradcheck: random projections v^T J u of the whole Jacobian, numerical against analytical
    (the full check takes seconds); any wrong entry shows up in them."""
    layer = Recurrent(tiny_cell())
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(2, 4, D, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        out, state = functional_call(layer, dict(zip(names, params, strict=True)), (x,))
        return out, state.memory, state.usage, state.link, state.read_weights, state.write_weights

    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    assert torch.autograd.gradcheck(run, (x, *params), fast_mode=True)


def test_initial_state_is_constant_memory_and_zeros_elsewhere():
    state = tiny_cell().initial_state(2)
    widths = [H, H, N * M, N, N, N * N, R * M, R * N, N]
    assert [tuple(f.shape) for f in state] == [(2, w) for w in widths]
    torch.testing.assert_close(state.memory, torch.full((2, N * M), 1e-6, dtype=torch.float64))
    assert all((f == 0).all() for name, f in zip(DNCState._fields, state, strict=True) if name != "memory")


def test_bad_sizes_and_states_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="read_heads must be a positive int, got 0"):
        DNCCell(D, H, read_heads=0)
    cell = tiny_cell()
    x, state = torch.randn(2, D, dtype=torch.float64), cell.initial_state(2)
    with pytest.raises(ShapeError, match=r"state.link must have shape \(2, 16\), got \(2, 4, 4\)"):
        cell(x, state._replace(link=state.link.view(2, N, N)))
    with pytest.raises(ShapeError, match=r"state must be DNCState\('h', 'c', 'memory'.*got 2 tensors"):
        cell(x, state[:2])
    with pytest.raises(DTypeError, match=r"state\.usage dtype torch\.float32 does not match"):
        cell(x, state._replace(usage=state.usage.float()))


def test_the_cell_and_its_encoder_are_exported():
    assert rnnkit.DNCCell is DNCCell and rnnkit.DNCState is DNCState and rnnkit.DNCEncoder is DNCEncoder
    assert {"DNCCell", "DNCState", "DNCEncoder"} <= set(rnnkit.__all__)


# --- cell: dnc ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"write_heads": 2},
            r"cell='dnc' has one write head and no head shifts .* got write_heads=2: drop it",
        ),
        (
            {"write_heads": 2, "shift_range": 0},
            r"got write_heads=2, shift_range=0: drop them, or use cell='ntm'",
        ),
        ({"bidirectional": True}, r"cell='dnc' cannot run bidirectional: set bidirectional: false \(a DNC"),
        ({"layer_norm": True}, r"cell='dnc' .* takes no layer_norm: drop it, or use cell='lstm'"),
    ],
)
def test_cell_dnc_refuses_what_it_cannot_run_and_names_the_fix(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(MemoryEncoderConfig, {"cell": "dnc", **options}, source="model")


def test_build_encoder_builds_dnc_layers_from_its_memory_keys():
    with pytest.raises(ConfigError, match=r"got shift_range=2: drop it, or use cell='ntm'"):
        build_encoder("dnc", 3, 4, memory={"shift_range": 2})
    with pytest.raises(ConfigError, match=r"cell='dnc' cannot run bidirectional"):
        build_encoder("dnc", 3, 4, bidirectional=True)
    config = MemoryEncoderConfig(
        cell="dnc", hidden_size=5, num_layers=2, memory_rows=6, memory_width=3, read_heads=2
    )
    assert config.memory() == {"memory_rows": 6, "memory_width": 3, "read_heads": 2}
    encoder = config.encoder(4)
    assert isinstance(encoder, DNCEncoder) and len(encoder.cells) == 2
    top = encoder.cells[1]
    assert (top.input_size, top.memory_rows, top.memory_width, top.read_heads) == (5, 6, 3, 2)
    # a saved config (every key dumped, write_heads and shift_range at 1) loads again
    assert validate(MemoryEncoderConfig, config.model_dump(), source="model") == config


def test_the_dnc_trace_ends_where_the_layers_end():
    torch.manual_seed(0)
    encoder = DNCEncoder(4, 5, num_layers=2, memory_rows=6, memory_width=3)
    encoder.eval()
    x = torch.randn(2, 7, 4)
    out = encoder(x)
    traces = encoder.trace(x)
    for layer, trace in enumerate(traces):
        assert isinstance(trace, DNCState)
        for name, field in zip(trace._fields, trace, strict=True):
            torch.testing.assert_close(field[-1], getattr(out.state, name)[layer])


def test_a_bit_sequence_dnc_trains_a_few_steps_with_a_finite_loss():
    torch.manual_seed(0)
    sizes = {"input_size": 5, "output_size": 4, "hidden_size": 16, "memory_rows": 8, "memory_width": 4}
    model = build_model({"name": "bit_sequence", "cell": "dnc", "read_heads": 2, **sizes})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs = torch.randint(0, 2, (4, 6, 5)).float()
    targets = torch.randint(0, 2, (4, 6, 4)).float()
    losses = []
    for _ in range(5):
        loss, _ = model.loss(inputs, targets, lengths=[6, 5, 4, 6])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert len(model.memory_trace(inputs[:1])) == 1


def test_the_shipped_dnc_copy_config_matches_the_ntm_in_parameter_count():
    counts = []
    for kind in ("ntm", "dnc"):
        config = load_run_config(CONFIGS / f"copy_{kind}.yaml")
        sizes = get_task("algorithmic").model_keys(config.data).fixed
        model = build_model({**config.model, **sizes})
        counts.append(sum(p.numel() for p in model.parameters()))
    assert 0.95 < counts[1] / counts[0] < 1.05, counts
