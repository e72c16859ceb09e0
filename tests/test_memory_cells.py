"""Memory-augmented cells (NTM, DNC) inside Recurrent, as every cell must behave: a padded batch
equals each sequence alone (padded steps leave memory and weightings as they were), and a sequence
cut in chunks with the state carried, through the layer or stepped through the cell, equals the
whole. Their own maths (addressing, allocation, links) is tested in test_ntm.py and test_dnc.py."""

from __future__ import annotations

import pytest
import torch

from rnnkit import DNCCell, DNCState, NTMCell, NTMState, Recurrent

D = 2
CELLS = {
    "ntm": (lambda: NTMCell(D, 3, memory_rows=3, memory_width=2), NTMState),
    "dnc": (lambda: DNCCell(D, 5, memory_rows=4, memory_width=3, read_heads=2), DNCState),
}


def tiny(kind: str):
    torch.manual_seed(0)
    make, state_type = CELLS[kind]
    return make().double(), state_type


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_padded_batch_equals_each_sequence_alone(kind):
    layer = Recurrent(tiny(kind)[0])
    x, lengths = torch.randn(3, 5, D, dtype=torch.float64), [5, 2, 4]
    out, state = layer(x, lengths=lengths)
    for i, L in enumerate(lengths):
        alone, alone_state = layer(x[i : i + 1, :L])
        torch.testing.assert_close(out[i : i + 1, :L], alone)
        assert (out[i, L:] == 0).all()
        for field, alone_field in zip(state, alone_state, strict=True):
            torch.testing.assert_close(field[:, i : i + 1], alone_field)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_chunked_sequence_with_the_state_carried_equals_the_whole(kind):
    """The first chunk through Recurrent, the second stepped through the cell from the state it returned."""
    cell, state_type = tiny(kind)
    layer = Recurrent(cell)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    whole, whole_state = layer(x)
    first, state = layer(x[:, :4])
    state = state_type(*(f[0] for f in state))  # (1, B, width) -> (B, width)
    second = []
    for x_t in x[:, 4:].unbind(1):
        y, state = cell(x_t, state)
        second.append(y)
    torch.testing.assert_close(torch.cat([first, torch.stack(second, 1)], 1), whole)
    for field, whole_field in zip(state, whole_state, strict=True):
        torch.testing.assert_close(field, whole_field[0])


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_state_carried_between_recurrent_calls_equals_the_whole(kind):
    layer = Recurrent(tiny(kind)[0])
    x = torch.randn(2, 6, D, dtype=torch.float64)
    whole, _ = layer(x)
    first, state = layer(x[:, :4])
    second, _ = layer(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
