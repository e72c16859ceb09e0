"""Attention: weights over real steps only, the context as their sum, gradients, padding independence."""

import pytest
import torch

from rnnkit.errors import ConfigError, ShapeError
from rnnkit.layers import AdditiveAttention, MultiplicativeAttention, build_attention

KINDS = ["additive", "dot", "general", "concat"]
Q = F = 4  # dot needs equal sizes; the others are also tested with unequal ones below


def make(kind, query_size=Q, key_size=F, dtype=torch.float32):
    torch.manual_seed(0)
    return build_attention(kind, query_size, key_size).to(dtype)


def inputs(B=3, S=5, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, Q, generator=g, dtype=dtype)
    keys = torch.randn(B, S, F, generator=g, dtype=dtype)
    lengths = torch.tensor([S, 2, 1][:B])
    mask = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    return query, keys, mask


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_over_real_steps_and_are_zero_on_padding(kind):
    query, keys, mask = inputs()
    _, weights = make(kind)(query, keys, mask)
    assert weights.shape == (3, 5)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))


@pytest.mark.parametrize("kind", KINDS)
def test_a_row_without_real_steps_gets_zero_weights_and_context_and_finite_gradients(kind):
    query, keys, mask = inputs()
    mask[1] = False
    keys.requires_grad_(True)
    context, weights = make(kind)(query, keys, mask)
    assert torch.all(weights[1] == 0) and torch.all(context[1] == 0)
    torch.testing.assert_close(weights[0].sum(), torch.tensor(1.0))
    context.sum().backward()
    assert torch.isfinite(keys.grad).all()


@pytest.mark.parametrize("kind", KINDS)
def test_context_is_the_weighted_sum_of_the_keys_or_the_values(kind):
    query, keys, mask = inputs()
    attention = make(kind)
    context, weights = attention(query, keys, mask)
    torch.testing.assert_close(context, (weights.unsqueeze(-1) * keys).sum(1))
    values = torch.randn(3, 5, 7)
    context, weights = attention(query, keys, mask, values)
    torch.testing.assert_close(context, (weights.unsqueeze(-1) * values).sum(1))


@pytest.mark.parametrize("kind", KINDS)
def test_prepared_keys_give_the_same_result(kind):
    query, keys, mask = inputs()
    attention = make(kind)
    expected = attention(query, keys, mask)
    got = attention(query, keys, mask, prepared=attention.prepare(keys))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_in_float64(kind):
    query, keys, mask = inputs(B=2, S=3, dtype=torch.float64)
    attention = make(kind, dtype=torch.float64)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, k: attention(q, k, mask), (query, keys))


@pytest.mark.parametrize("kind", KINDS)
def test_a_padded_batch_gives_each_sequence_alone(kind):
    query, keys, mask = inputs()
    attention = make(kind)
    context, weights = attention(query, keys, mask)
    for b, n in enumerate(mask.sum(-1).tolist()):
        alone_context, alone_weights = attention(query[b : b + 1], keys[b : b + 1, :n])
        torch.testing.assert_close(context[b], alone_context[0])
        torch.testing.assert_close(weights[b, :n], alone_weights[0])


@pytest.mark.parametrize("kind", ["additive", "general", "concat"])
def test_query_and_key_sizes_may_differ(kind):
    attention = build_attention(kind, 3, 6)
    context, weights = attention(torch.randn(2, 3), torch.randn(2, 4, 6))
    assert context.shape == (2, 6) and weights.shape == (2, 4)


def test_classes_and_the_factory_agree():
    assert isinstance(build_attention("additive", 3, 5, 7), AdditiveAttention)
    assert build_attention("additive", 3, 5, 7).attention_size == 7
    assert build_attention("general", 3, 5).kind == "general"
    assert isinstance(build_attention("concat", 3, 5), MultiplicativeAttention)


def test_bad_options_are_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="dot attention needs the query and key sizes equal, got 3 and 5"):
        build_attention("dot", 3, 5)
    with pytest.raises(ConfigError, match="unknown attention 'bahdanau'"):
        build_attention("bahdanau", 3, 5)
    with pytest.raises(ConfigError, match="unknown multiplicative attention 'additive'"):
        MultiplicativeAttention(3, 5, "additive")
    with pytest.raises(ConfigError, match="attention_size applies to kind 'concat' only"):
        MultiplicativeAttention(3, 5, "general", attention_size=8)


def test_bad_shapes_are_refused():
    attention = make("general")
    query, keys, mask = inputs()
    with pytest.raises(ShapeError, match=r"query must be \(B, Q\) with Q = 4, got \(3, 5\)"):
        attention(torch.randn(3, 5), keys, mask)
    with pytest.raises(ShapeError, match=r"keys must be \(B, S, F\) with B = 3 \(the query's\) and F = 4"):
        attention(query, keys[:2], mask)
    with pytest.raises(ShapeError, match=r"mask must be bool \(B, S\) = \(3, 5\)"):
        attention(query, keys, mask.long())
