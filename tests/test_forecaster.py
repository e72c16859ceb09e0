"""The forecaster task model: shapes, training signal, padding, carried state, config and errors."""

import pytest
import torch

import rnnkit.models.forecaster  # noqa: F401  (registers "forecaster" until models/__init__ imports it)
from rnnkit.config import validate
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.models import build_model
from rnnkit.models.forecaster import Forecaster, ForecasterConfig

CELLS = ["rnn", "lstm", "gru"]


def make(**options) -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(ForecasterConfig(**{"input_size": 3, "hidden_size": 8, **options}))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("horizon", "output_size"), [(1, 1), (4, 2)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes(cell, horizon, output_size, bidirectional):
    model = make(
        cell=cell, horizon=horizon, output_size=output_size, num_layers=2, bidirectional=bidirectional
    )
    predictions, state = model(torch.randn(5, 7, 3))
    assert predictions.shape == (5, horizon, output_size)
    K = 2 if bidirectional else 1
    assert all(field.shape == (2 * K, 5, 8) for field in state)
    assert type(state) is type(model.initial_state(5))
    assert all(f.shape == (2 * K, 5, 8) for f in model.initial_state(5))
    assert model.predict(torch.randn(2, 4, 3)).shape == (2, horizon, output_size)


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_loss_falls_with_a_few_adam_steps(loss):
    torch.manual_seed(0)
    model = make(cell="gru", horizon=2, loss=loss)
    x = torch.randn(16, 6, 3)
    y = torch.stack([x[:, -1, :1], x[:, -2, :1]], 1)  # (16, 2, 1): the last two values of feature 0
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        value, _ = model.loss(x, y)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]


def test_loss_is_mse_or_mae_of_predictions():
    x, y = torch.randn(4, 5, 3), torch.randn(4, 3, 2)
    for name, expected in (("mse", lambda p: ((p - y) ** 2).mean()), ("mae", lambda p: (p - y).abs().mean())):
        model = make(horizon=3, output_size=2, loss=name)
        value, state = model.loss(x, y)
        predictions, final = model(x)
        torch.testing.assert_close(value, expected(predictions))
        torch.testing.assert_close(state, final)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["fused", "cell-path"])
def test_padding_gives_each_sequence_its_own_prediction(cell, bidirectional, layer_norm):
    model = make(cell=cell, bidirectional=bidirectional, layer_norm=layer_norm, num_layers=2, horizon=2)
    lengths = [6, 3, 1, 4]
    x = torch.randn(4, 6, 3) * 5  # padded steps hold garbage, not zeros, so leaking them would show
    predictions, state = model(x, lengths=lengths)
    for i, n in enumerate(lengths):
        alone, alone_state = model(x[i : i + 1, :n])
        torch.testing.assert_close(predictions[i : i + 1], alone, atol=1e-5, rtol=1e-4)
        for field, alone_field in zip(state, alone_state, strict=True):
            torch.testing.assert_close(field[:, i : i + 1], alone_field, atol=1e-5, rtol=1e-4)


def test_lengths_as_tensor_and_list_agree():
    model = make(bidirectional=True)
    x = torch.randn(3, 5, 3)
    torch.testing.assert_close(model(x, lengths=[5, 2, 3])[0], model(x, lengths=torch.tensor([5, 2, 3]))[0])


@pytest.mark.parametrize("cell", CELLS)
def test_returned_state_carries_into_the_next_chunk(cell):
    model = make(cell=cell, num_layers=2)
    x = torch.randn(3, 9, 3)
    whole, whole_state = model(x)
    _, state = model(x[:, :4])
    second, final = model(x[:, 4:], state=state)
    torch.testing.assert_close(second, whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final, whole_state, atol=1e-5, rtol=1e-4)
    _, via_loss = model.loss(x[:, :4], torch.zeros(3, 1, 1))
    torch.testing.assert_close(
        model.loss(x[:, 4:], torch.zeros(3, 1, 1), state=via_loss)[0].detach(),
        model.loss(x, torch.zeros(3, 1, 1))[0].detach(),
        atol=1e-5,
        rtol=1e-4,
    )
    torch.testing.assert_close(model(x, state=model.initial_state(3))[0], whole)


@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_reads_forward_at_last_step_and_backward_at_step_zero(cell):
    model = make(cell=cell, bidirectional=True, num_layers=2, horizon=3, output_size=2)
    x, lengths = torch.randn(3, 6, 3), [6, 2, 4]
    outputs, state = model.encoder(x, lengths=lengths)  # (3, 6, 16); h (4, 3, 8)
    forward_last = torch.stack([outputs[b, n - 1, :8] for b, n in enumerate(lengths)])  # (3, 8)
    backward_first = outputs[:, 0, 8:]  # (3, 8)
    # each half is where its direction has read the whole sequence: the top layer's final h
    torch.testing.assert_close(forward_last, state.h[2])
    torch.testing.assert_close(backward_first, state.h[3])
    expected = model.head(torch.cat([forward_last, backward_first], -1)).view(3, 3, 2)
    torch.testing.assert_close(model(x, lengths=lengths)[0], expected)


def test_predict_is_eval_mode_without_gradients_and_restores_the_mode():
    model = make(zoneout=0.3, recurrent_dropout=0.3)
    x = torch.randn(2, 5, 3)
    predictions = model.predict(x)
    assert not predictions.requires_grad and model.training
    model.eval()
    torch.testing.assert_close(predictions, model(x)[0])
    assert not model.training


def test_dropout_reaches_the_encoder_only_between_layers(recwarn):
    assert make(dropout=0.3).encoder.dropout == 0.0
    assert make(dropout=0.3, num_layers=2).encoder.dropout == 0.3
    assert not [w for w in recwarn if "dropout" in str(w.message)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"input_size": 3, "hidden_size": 0}, r"hidden_size: Input should be greater than 0 \(got 0\)"),
        ({"input_size": 0}, r"input_size: Input should be greater than 0"),
        ({"input_size": 3, "horizon": -1}, r"horizon: Input should be greater than 0"),
        ({"input_size": 3, "cell": "transformer"}, r"cell: Input should be 'rnn', 'lstm' or 'gru'"),
        ({"input_size": 3, "dropout": 1.0}, r"dropout: Input should be less than 1"),
        ({"input_size": 3, "zoneout": -0.1}, r"zoneout: Input should be greater than or equal to 0"),
        ({"input_size": 3, "loss": "huber"}, r"loss: Input should be 'mse' or 'mae'"),
        ({"input_size": 3, "init": "orthogonl"}, r"unknown initialiser 'orthogonl'.*'orthogonal'"),
        ({"input_size": 3, "nonlinearity": "relu"}, r"nonlinearity='relu' applies to cell='rnn' only"),
        ({"input_size": 3, "hiden_size": 8}, r"unknown key 'hiden_size'; did you mean 'hidden_size'"),
        ({"hidden_size": 8}, r"missing key 'input_size'"),
    ],
)
def test_config_validation_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        validate(ForecasterConfig, data)


def test_relu_rnn_config_builds_a_relu_encoder():
    model = make(cell="rnn", nonlinearity="relu")
    assert model.encoder.nonlinearity == "relu"


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (
            torch.zeros(4, 3),
            r"targets must be \(B, horizon, output_size\) = \(4, 3, 1\), got \(4, 3\) "
            r"\(add the last axis with targets.unsqueeze\(-1\)\)",
        ),
        (torch.zeros(4, 2, 1), r"= \(4, 3, 1\), got \(4, 2, 1\)$"),
        (torch.zeros(5, 3, 1), r"= \(4, 3, 1\), got \(5, 3, 1\)$"),
        ([0.0] * 12, r"= \(4, 3, 1\), got list$"),
    ],
)
def test_targets_of_the_wrong_shape_are_refused(targets, message):
    model = make(horizon=3)
    with pytest.raises(ShapeError, match=message):
        model.loss(torch.randn(4, 5, 3), targets)


def test_build_model_from_a_mapping_and_from_its_dump():
    model = build_model({"name": "forecaster", "input_size": 3})
    assert isinstance(model, Forecaster) and model.config.cell == "lstm" and model.config.hidden_size == 64
    assert model(torch.randn(2, 4, 3))[0].shape == (2, 1, 1)
    again = build_model(model.config.model_dump())
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(again.predict(x), model.predict(x))
    with pytest.raises(ConfigError, match="hidden_size"):
        build_model({"name": "forecaster", "input_size": 3, "hidden_size": 0})
