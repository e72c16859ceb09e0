"""Bad input gets a typed error that names what was expected and what came; odd settings warn."""

from __future__ import annotations

import warnings

import pytest
import torch

import rnnkit
from rnnkit.errors import unknown_name

D, H = 3, 4
PATHS = ["fused", "cell"]


def lstm(path: str, num_layers: int = 1, **options) -> rnnkit.LSTM:
    torch.manual_seed(0)
    layer = rnnkit.LSTM(D, H, num_layers=num_layers, path=path, **options)
    assert layer.path == path
    return layer


def gru(path: str, num_layers: int = 1) -> rnnkit.GRU:
    torch.manual_seed(0)
    return rnnkit.GRU(D, H, num_layers=num_layers, path=path)


def x(B: int = 2, T: int = 5, features: int = D, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(B, T, features, generator=torch.Generator().manual_seed(0)).to(dtype)


def zeros_state(num_states: int, B: int, hidden: int = H, dtype=torch.float32):
    return rnnkit.LSTMState(
        torch.zeros(num_states, B, hidden, dtype=dtype), torch.zeros(num_states, B, hidden, dtype=dtype)
    )


# ---------------------------------------------------------------- the hierarchy


@pytest.mark.parametrize(
    "error, builtin",
    [
        (rnnkit.ShapeError, ValueError),
        (rnnkit.ConfigError, ValueError),
        (rnnkit.DTypeError, TypeError),
        (rnnkit.DataError, ValueError),
    ],
)
def test_every_error_is_an_rnnkit_error_and_a_builtin_one(error, builtin):
    assert issubclass(error, rnnkit.RnnkitError)
    assert issubclass(error, builtin)


def test_unknown_name_suggests_the_nearest():
    err = unknown_name("colour", "gren", ["red", "green"])
    assert isinstance(err, rnnkit.ConfigError)
    assert "'gren'" in str(err) and "['green', 'red']" in str(err) and "Did you mean 'green'?" in str(err)
    assert "Did you mean" not in str(unknown_name("colour", "zzzzzz", ["red", "green"]))


# ---------------------------------------------------------------- input shape


@pytest.mark.parametrize("path", PATHS)
def test_two_dim_input_to_a_layer(path):
    with pytest.raises(
        rnnkit.ShapeError, match=r"\(B, T, D\).*got rank 2 with shape \(5, 3\).*unsqueeze\(0\)"
    ):
        lstm(path)(torch.randn(5, D))


@pytest.mark.parametrize("path", PATHS)
def test_four_dim_input_to_a_layer(path):
    with pytest.raises(rnnkit.ShapeError, match=r"got rank 4 with shape \(1, 2, 5, 3\).*reshape"):
        lstm(path)(torch.randn(1, 2, 5, D))


def test_three_dim_input_to_a_cell():
    cell = rnnkit.LSTMCell(D, H)
    with pytest.raises(rnnkit.ShapeError, match=r"\(B, D\).*got rank 3 with shape \(2, 5, 3\)"):
        cell(torch.randn(2, 5, D))


def test_one_dim_input_to_a_cell():
    with pytest.raises(rnnkit.ShapeError, match=r"\(B, D\).*got rank 1.*unsqueeze\(0\)"):
        rnnkit.GRUCell(D, H)(torch.randn(D))


def test_non_tensor_input():
    with pytest.raises(rnnkit.ShapeError, match=r"must be a torch\.Tensor, got list"):
        rnnkit.RNN(D, H)([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("path", PATHS)
def test_wrong_feature_size_to_a_layer(path):
    with pytest.raises(rnnkit.ShapeError, match=r"feature size must be 3 .*got 7 in shape \(2, 5, 7\)"):
        lstm(path)(x(features=7))


def test_wrong_feature_size_to_a_cell():
    with pytest.raises(rnnkit.ShapeError, match=r"feature size must be 3 .*got 2 in shape \(4, 2\)"):
        rnnkit.RNNCell(D, H)(torch.randn(4, 2))


def test_wrong_feature_size_to_recurrent_and_wrappers():
    recurrent = rnnkit.Recurrent(rnnkit.GRUCell(D, H))
    bidirectional = rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.GRUCell(D, H)))
    stacked = rnnkit.Stacked([rnnkit.Recurrent(rnnkit.GRUCell(D, H))], residual=True)
    for module in (recurrent, bidirectional, stacked):
        with pytest.raises(rnnkit.ShapeError, match=r"feature size must be 3 .*got 5"):
            module(x(features=5))


@pytest.mark.parametrize("path", PATHS)
def test_empty_sequence(path):
    with pytest.raises(rnnkit.ShapeError, match=r"input is empty: shape \(2, 0, 3\).*T >= 1"):
        lstm(path)(torch.randn(2, 0, D))


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch(path):
    with pytest.raises(rnnkit.ShapeError, match=r"input is empty: shape \(0, 5, 3\).*B >= 1"):
        lstm(path)(torch.randn(0, 5, D))


def test_empty_batch_to_a_cell():
    with pytest.raises(rnnkit.ShapeError, match=r"input is empty: shape \(0, 3\)"):
        rnnkit.LSTMCell(D, H)(torch.randn(0, D))


# ---------------------------------------------------------------- lengths


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "lengths, got",
    [([5, 0], "min 0, max 5"), ([6, 2], "min 2, max 6"), (torch.tensor([-1, 3]), "min -1, max 3")],
    ids=["zero", "beyond_T", "negative"],
)
def test_lengths_out_of_range(path, lengths, got):
    with pytest.raises(rnnkit.ShapeError, match=rf"lengths must lie in \[1, 5\].*got {got}"):
        lstm(path, bidirectional=True)(x(T=5), lengths=lengths)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "lengths, shape", [([5, 4, 3], r"\(3,\)"), ([5], r"\(1,\)"), ([[5, 4]], r"\(1, 2\)")]
)
def test_lengths_of_the_wrong_count(path, lengths, shape):
    with pytest.raises(rnnkit.ShapeError, match=rf"one length per sequence: expected 2, got shape {shape}"):
        lstm(path)(x(B=2), lengths=lengths)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "lengths, dtype",
    [
        ([5.0, 3.0], "torch.float32"),
        (torch.tensor([5.0, 3.0], dtype=torch.float64), "torch.float64"),
        (torch.tensor([True, True]), "torch.bool"),
    ],
    ids=["float_list", "float64_tensor", "bool_tensor"],
)
def test_non_integer_lengths(path, lengths, dtype):
    with pytest.raises(rnnkit.ShapeError, match=rf"lengths must be integers, got dtype {dtype}"):
        lstm(path)(x(B=2), lengths=lengths)


def test_bad_lengths_in_recurrent_and_wrappers():
    recurrent = rnnkit.Recurrent(rnnkit.RNNCell(D, H))
    bidirectional = rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.RNNCell(D, H)))
    stacked = rnnkit.Stacked([rnnkit.Recurrent(rnnkit.RNNCell(D, H))])
    for module in (recurrent, bidirectional, stacked):
        with pytest.raises(rnnkit.ShapeError, match=r"lengths must lie in \[1, 5\]"):
            module(x(T=5), lengths=[0, 5])
        with pytest.raises(rnnkit.ShapeError, match="one length per sequence: expected 2"):
            module(x(B=2), lengths=[5, 5, 5])


# ---------------------------------------------------------------- state


@pytest.mark.parametrize("path", PATHS)
def test_state_with_the_wrong_batch(path):
    state = zeros_state(2, B=3)
    with pytest.raises(rnnkit.ShapeError, match=r"state\.h must have shape \(\d, 2, 4\), got \(\d, 3, 4\)"):
        lstm(path, num_layers=2)(x(B=2), state)


@pytest.mark.parametrize("path", PATHS)
def test_state_with_the_wrong_hidden_size(path):
    state = zeros_state(1, B=2, hidden=5)
    with pytest.raises(rnnkit.ShapeError, match=r"state\.h must have shape \(1, 2, 4\), got \(1, 2, 5\)"):
        lstm(path)(x(B=2), state)


@pytest.mark.parametrize("path", PATHS)
def test_state_with_the_wrong_number_of_layers(path):
    # 2 layers need L*K = 2 states; a one-layer state must not be accepted
    expected = {"fused": r"state\.h must have shape \(2, 2, 4\)", "cell": r"L\*K = 2 \(layers x directions\)"}
    with pytest.raises(rnnkit.ShapeError, match=rf"{expected[path]}.*got \(1, 2, 4\)"):
        lstm(path, num_layers=2)(x(B=2), zeros_state(1, B=2))


@pytest.mark.parametrize("path", PATHS)
def test_state_missing_the_direction_axis(path):
    # a bidirectional layer needs 2 states per layer; a unidirectional one does not fit
    expected = {"fused": r"state\.h must have shape \(2, 2, 4\)", "cell": r"L\*K = 2"}
    with pytest.raises(rnnkit.ShapeError, match=rf"{expected[path]}.*got \(1, 2, 4\)"):
        lstm(path, bidirectional=True)(x(B=2), zeros_state(1, B=2))


@pytest.mark.parametrize("path", PATHS)
def test_single_tensor_state_to_an_lstm(path):
    with pytest.raises(rnnkit.ShapeError, match=r"state must be LSTMState\('h', 'c'\).*got 1 tensors"):
        lstm(path)(x(B=2), torch.zeros(1, 2, H))


@pytest.mark.parametrize("path", PATHS)
def test_three_field_state_to_an_lstm(path):
    h = torch.zeros(1, 2, H)
    with pytest.raises(rnnkit.ShapeError, match=r"state must be LSTMState\('h', 'c'\).*got 3 tensors"):
        lstm(path)(x(B=2), (h, h, h))


@pytest.mark.parametrize("path", PATHS)
def test_two_field_state_to_a_gru(path):
    h = torch.zeros(1, 2, H)
    with pytest.raises(rnnkit.ShapeError, match=r"state must be RNNState\('h',\).*got 2 tensors"):
        gru(path)(x(B=2), (h, h))


def test_wrong_state_to_a_cell():
    cell = rnnkit.LSTMCell(D, H)
    with pytest.raises(rnnkit.ShapeError, match=r"state\.c must have shape \(2, 4\), got \(3, 4\)"):
        cell(torch.randn(2, D), (torch.zeros(2, H), torch.zeros(3, H)))
    with pytest.raises(rnnkit.ShapeError, match=r"state must be LSTMState.*got 1 tensors"):
        cell(torch.randn(2, D), torch.zeros(2, H))
    with pytest.raises(rnnkit.ShapeError, match=r"state must be LSTMState.*got str"):
        cell(torch.randn(2, D), "state")


# ---------------------------------------------------------------- dtype


@pytest.mark.parametrize("path", PATHS)
def test_float64_input_into_a_float32_model(path):
    with pytest.raises(
        rnnkit.DTypeError,
        match=r"input dtype torch\.float64 does not match the weights' dtype torch\.float32.*x\.to",
    ):
        lstm(path)(x(dtype=torch.float64))


@pytest.mark.parametrize("path", PATHS)
def test_integer_input_is_converted_not_the_module(path):
    # a module cannot be moved to an integer dtype: the fix converts the input, or embeds token ids
    with pytest.raises(
        rnnkit.DTypeError,
        match=r"input dtype torch\.int64 does not match the weights' dtype torch\.float32: .*"
        r"convert the input with x\.to\(torch\.float32\); .*token ids.*nn\.Embedding",
    ) as caught:
        lstm(path)(x().long())
    assert "the module with" not in str(caught.value)


@pytest.mark.parametrize(
    "module, ids",
    [
        (lambda: rnnkit.GRU(D, H), torch.zeros(2, 5, dtype=torch.long)),
        (lambda: rnnkit.MinGRU(D, H), torch.zeros(2, 5, dtype=torch.long)),
        (lambda: rnnkit.LSTMCell(D, H), torch.zeros(2, dtype=torch.long)),
    ],
    ids=["layer", "minimal_layer", "cell"],
)
def test_token_ids_without_features_point_to_an_embedding(module, ids):
    with pytest.raises(
        rnnkit.ShapeError,
        match=r"torch\.int64 values without a feature dimension look like token ids.*"
        r"nn\.Embedding\(V, D\)",
    ):
        module()(ids)


def test_float64_input_into_a_float32_cell():
    with pytest.raises(
        rnnkit.DTypeError, match=r"input dtype torch\.float64 .* weights' dtype torch\.float32"
    ):
        rnnkit.GRUCell(D, H)(torch.randn(2, D, dtype=torch.float64))


@pytest.mark.parametrize("path", PATHS)
def test_float32_input_into_a_float64_model(path):
    with pytest.raises(
        rnnkit.DTypeError, match=r"input dtype torch\.float32 .* weights' dtype torch\.float64"
    ):
        lstm(path).double()(x())


@pytest.mark.parametrize("path", PATHS)
def test_state_dtype_mismatch(path):
    state = zeros_state(1, B=2, dtype=torch.float64)
    with pytest.raises(
        rnnkit.DTypeError, match=r"state\.h dtype torch\.float64 does not match .*torch\.float32"
    ):
        lstm(path)(x(B=2), state)


@pytest.mark.parametrize("path", PATHS)
def test_state_dtype_mismatch_in_the_second_field(path):
    state = rnnkit.LSTMState(torch.zeros(1, 2, H), torch.zeros(1, 2, H, dtype=torch.float16))
    with pytest.raises(rnnkit.DTypeError, match=r"state\.c dtype torch\.float16"):
        lstm(path)(x(B=2), state)


def test_state_dtype_mismatch_in_a_cell():
    with pytest.raises(rnnkit.DTypeError, match=r"state\.h dtype torch\.float64"):
        rnnkit.RNNCell(D, H)(torch.randn(2, D), torch.zeros(2, H, dtype=torch.float64))


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN, rnnkit.LSTMCell, rnnkit.RNNCell])
def test_unknown_initialiser_suggests_the_nearest(build):
    with pytest.raises(rnnkit.ConfigError, match=r"unknown initialiser 'xavir'.*Did you mean 'xavier'\?"):
        build(D, H, init="xavir")


def test_unknown_initialiser_lists_the_valid_ones():
    with pytest.raises(rnnkit.ConfigError, match=r"expected one of \[.*'default'.*'orthogonal'.*\]"):
        rnnkit.GRUCell(D, H, init="uniform")


@pytest.mark.parametrize("build", [rnnkit.RNN, rnnkit.RNNCell])
def test_unknown_nonlinearity(build):
    with pytest.raises(
        rnnkit.ConfigError, match=r"unknown nonlinearity 'tahn'.*\['relu', 'tanh'\].*'tanh'\?"
    ):
        build(D, H, nonlinearity="tahn")


def test_unknown_nonlinearity_in_the_reference_step():
    from rnnkit.functional import elman_update

    with pytest.raises(rnnkit.ConfigError, match="unknown nonlinearity 'sigmoid'"):
        elman_update(torch.zeros(1, 2), torch.zeros(1, 2), "sigmoid")


def test_unknown_merge_mode():
    layer = rnnkit.Recurrent(rnnkit.LSTMCell(D, H))
    with pytest.raises(
        rnnkit.ConfigError, match=r"unknown merge mode 'cat'.*'concat'.*Did you mean 'concat'\?"
    ):
        rnnkit.Bidirectional(layer, merge="cat")


def test_bidirectional_refuses_a_reversed_layer():
    with pytest.raises(rnnkit.ConfigError, match=r"forward rnnkit Recurrent layer \(reverse=False\)"):
        rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.LSTMCell(D, H), reverse=True))


@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_unknown_path(build):
    with pytest.raises(rnnkit.ConfigError, match=r"unknown path 'fast'.*\['auto', 'cell', 'fused'\]"):
        build(D, H, path="fast")
    with pytest.raises(rnnkit.ConfigError, match=r"Did you mean 'fused'\?"):
        build(D, H, path="fusd")


@pytest.mark.parametrize(
    "option",
    [
        {"layer_norm": True},
        {"zoneout": 0.1},
        {"recurrent_dropout": 0.1},
        {"learn_initial_state": True},
        {"residual": True},
    ],
    ids=lambda o: next(iter(o)),
)
def test_fused_path_with_a_cell_only_option(option):
    with pytest.raises(rnnkit.ConfigError, match=r"path='fused' needs .*layer_norm=False.*path='auto'"):
        rnnkit.LSTM(D, H, path="fused", **option)
    # the same option is fine on the automatic path, which falls back to the cells
    assert rnnkit.LSTM(D, H, **option).path == "cell"


@pytest.mark.parametrize(
    "option, value",
    [("zoneout", 1.0), ("zoneout", 1.5), ("recurrent_dropout", -0.1), ("recurrent_dropout", 1.0)],
)
@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRUCell])
def test_probabilities_out_of_range(build, option, value):
    with pytest.raises(rnnkit.ConfigError, match=rf"{option} must be a probability in \[0, 1\), got {value}"):
        build(D, H, **{option: value})


@pytest.mark.parametrize("dropout", [1.0, -0.1])
def test_layer_dropout_out_of_range(dropout):
    with pytest.raises(
        rnnkit.ConfigError, match=rf"dropout must be a probability in \[0, 1\), got {dropout}"
    ):
        rnnkit.LSTM(D, H, num_layers=2, dropout=dropout)


@pytest.mark.parametrize("num_layers", [0, -1, 1.5])
def test_num_layers_must_be_positive(num_layers):
    with pytest.raises(rnnkit.ConfigError, match=rf"num_layers must be a positive int, got {num_layers}"):
        rnnkit.GRU(D, H, num_layers=num_layers)


@pytest.mark.parametrize("sizes", [(0, H), (D, 0), (D, 2.0)])
def test_sizes_must_be_positive_ints(sizes):
    with pytest.raises(rnnkit.ConfigError, match=r"(input|hidden)_size must be a positive int, got "):
        rnnkit.LSTMCell(*sizes)


def test_stacked_with_mismatched_layer_sizes():
    layers = [rnnkit.Recurrent(rnnkit.LSTMCell(D, H)), rnnkit.Recurrent(rnnkit.LSTMCell(5, H))]
    with pytest.raises(
        rnnkit.ConfigError, match=r"layer 0 outputs 4 features but layer 1 expects 5.*equal 4"
    ):
        rnnkit.Stacked(layers)


def test_stacked_with_a_concat_bidirectional_below_a_narrow_layer():
    below = rnnkit.Bidirectional(rnnkit.Recurrent(rnnkit.GRUCell(D, H)))  # outputs 2H = 8
    above = rnnkit.Recurrent(rnnkit.GRUCell(H, H))
    with pytest.raises(rnnkit.ConfigError, match="layer 0 outputs 8 features but layer 1 expects 4"):
        rnnkit.Stacked([below, above])


def test_stacked_needs_a_layer():
    with pytest.raises(rnnkit.ConfigError, match="at least one layer"):
        rnnkit.Stacked([])


# ---------------------------------------------------------------- warnings


@pytest.mark.parametrize("build", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_dropout_with_one_layer_warns(build):
    with pytest.warns(
        UserWarning, match=r"dropout=0\.3 acts between layers.*num_layers=1.*recurrent_dropout"
    ) as record:
        build(D, H, dropout=0.3)
    assert record[0].filename == __file__, "the warning must point at the caller's line"


def test_dropout_with_two_layers_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnkit.LSTM(D, H, num_layers=2, dropout=0.3)
        rnnkit.LSTM(D, H, num_layers=1, dropout=0.0)
