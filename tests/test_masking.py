"""rnnkit.functional.masking: lengths_to_mask and reverse_padded, by example and by property."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.functional import lengths_to_mask, reverse_padded


@st.composite
def padded_batches(draw, max_batch: int = 5, max_len: int = 7, trailing: tuple[int, ...] = ()):
    """A random (B, T, *trailing) float tensor and lengths (B,) with 1 <= length <= T."""
    B = draw(st.integers(1, max_batch))
    T = draw(st.integers(1, max_len))
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2**16))
    x = torch.randn(B, T, *trailing, generator=torch.Generator().manual_seed(seed))
    return x, torch.tensor(lengths, dtype=torch.int64)


# ---------------------------------------------------------------- lengths_to_mask, by example


def test_lengths_to_mask_example():
    mask = lengths_to_mask(torch.tensor([3, 1, 4]), 4)
    expected = torch.tensor(
        [
            [True, True, True, False],
            [True, False, False, False],
            [True, True, True, True],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_lengths_to_mask_accepts_int32_lengths():
    mask = lengths_to_mask(torch.tensor([2, 5], dtype=torch.int32), 5)
    assert torch.equal(mask.sum(1), torch.tensor([2, 5]))


def test_lengths_to_mask_longer_max_len_pads_with_false():
    mask = lengths_to_mask(torch.tensor([2]), 6)
    assert mask.shape == (1, 6)
    assert mask.tolist() == [[True, True, False, False, False, False]]


# ---------------------------------------------------------------- lengths_to_mask, by property


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    extra=st.integers(0, 3),
)
def test_lengths_to_mask_is_a_prefix_of_true_of_each_length(lengths, extra):
    T = max(lengths) + extra
    mask = lengths_to_mask(torch.tensor(lengths), T)
    assert mask.shape == (len(lengths), T)
    assert mask.sum(1).tolist() == lengths
    for row, n in zip(mask.tolist(), lengths, strict=True):
        assert row == [True] * n + [False] * (T - n)


# ---------------------------------------------------------------- reverse_padded, by example


def test_reverse_padded_example_flips_only_within_length():
    x = torch.tensor(
        [
            [1.0, 2.0, 3.0, 4.0, 5.0],
            [1.0, 2.0, 3.0, -9.0, -8.0],
            [1.0, -7.0, -6.0, -5.0, -4.0],
        ]
    )
    out = reverse_padded(x, torch.tensor([5, 3, 1]))
    expected = torch.tensor(
        [
            [5.0, 4.0, 3.0, 2.0, 1.0],
            [3.0, 2.0, 1.0, -9.0, -8.0],
            [1.0, -7.0, -6.0, -5.0, -4.0],
        ]
    )
    assert torch.equal(out, expected)


def test_reverse_padded_without_lengths_is_flip():
    x = torch.arange(24.0).view(2, 4, 3)
    assert torch.equal(reverse_padded(x, None), x.flip(1))


def test_reverse_padded_full_lengths_is_flip():
    x = torch.arange(24.0).view(2, 4, 3)
    assert torch.equal(reverse_padded(x, torch.tensor([4, 4])), x.flip(1))


def test_reverse_padded_moves_whole_feature_vectors():
    # features of one step travel together; the last dims are not reversed
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    out = reverse_padded(x, torch.tensor([2, 3]))
    assert torch.equal(out[0, 0], x[0, 1])
    assert torch.equal(out[0, 1], x[0, 0])
    assert torch.equal(out[0, 2], x[0, 2])
    assert torch.equal(out[1], x[1].flip(0))


def test_reverse_padded_keeps_dtype_and_does_not_modify_input():
    x = torch.arange(10, dtype=torch.int64).view(2, 5)
    before = x.clone()
    out = reverse_padded(x, torch.tensor([3, 5]))
    assert out.dtype == torch.int64
    assert torch.equal(x, before)
    assert out.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


def test_reverse_padded_passes_gradients_back_to_the_right_places():
    x = torch.zeros(1, 4, requires_grad=True)
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    (reverse_padded(x, torch.tensor([3])) * weights).sum().backward()
    assert x.grad.tolist() == [[3.0, 2.0, 1.0, 4.0]]


# ---------------------------------------------------------------- reverse_padded, by property


@settings(max_examples=60, deadline=None)
@given(batch=padded_batches(trailing=(3,)))
def test_reverse_padded_is_an_involution(batch):
    x, lengths = batch
    assert torch.equal(reverse_padded(reverse_padded(x, lengths), lengths), x)


@settings(max_examples=60, deadline=None)
@given(batch=padded_batches(trailing=(2,)))
def test_reverse_padded_flips_real_steps_and_leaves_padding_in_place(batch):
    x, lengths = batch
    out = reverse_padded(x, lengths)
    assert out.shape == x.shape
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], x[b, :n].flip(0))
        assert torch.equal(out[b, n:], x[b, n:])


@settings(max_examples=40, deadline=None)
@given(batch=padded_batches())
def test_reverse_padded_works_on_two_dim_input(batch):
    x, lengths = batch  # (B, T), no feature axis
    out = reverse_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert out[b].tolist() == x[b, :n].flip(0).tolist() + x[b, n:].tolist()


@settings(max_examples=40, deadline=None)
@given(batch=padded_batches(trailing=(2,)))
def test_reverse_padded_keeps_the_mask(batch):
    # the real steps stay where the mask says, so a masked tensor stays masked
    x, lengths = batch
    mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, T, 1)
    masked = x * mask
    assert torch.equal(reverse_padded(masked, lengths) * ~mask, torch.zeros_like(x))


@settings(max_examples=40, deadline=None)
@given(batch=padded_batches(trailing=(2,)), int32=st.booleans())
def test_reverse_padded_accepts_int32_lengths(batch, int32):
    x, lengths = batch
    dtype = torch.int32 if int32 else torch.int64
    assert torch.equal(reverse_padded(x, lengths.to(dtype)), reverse_padded(x, lengths))
