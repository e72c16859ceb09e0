"""The forecaster task model: layout, strategies, distributions, leakage, rollouts, calibration, errors."""

import math

import pytest
import torch

import rnnkit.models.forecaster  # noqa: F401  (registers "forecaster" until models/__init__ imports it)
from rnnkit.config import validate
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.models import build_model
from rnnkit.models.forecaster import Forecaster, ForecasterConfig

CELLS = ["rnn", "lstm", "gru"]
STRATEGIES = ["direct", "recursive", "seq2seq"]
DISTRIBUTIONS = ["point", "gaussian", "quantile"]
PARAMS = {"point": 1, "gaussian": 2, "quantile": 3}


def make(**options) -> Forecaster:
    """A tiny forecaster; by default one past and one known covariate (no past ones for recursive)."""
    torch.manual_seed(0)
    defaults = {"lookback": 5, "hidden_size": 8, "num_known": 1}
    defaults["num_past"] = 0 if options.get("strategy") == "recursive" else 1
    return Forecaster(ForecasterConfig(**{**defaults, **options}))


def window(model: Forecaster, batch: int = 4, seed: int = 1) -> torch.Tensor:
    """Random inputs (B, lookback + horizon, D) with the horizon rows' target and past columns zero."""
    c = model.config
    x = torch.randn(
        batch, c.lookback + c.horizon, c.num_features, generator=torch.Generator().manual_seed(seed)
    )
    x[:, c.lookback :, : c.output_size + c.num_past] = 0
    return x


def truth(model: Forecaster, batch: int = 4, seed: int = 2) -> torch.Tensor:
    c = model.config
    return torch.randn(batch, c.horizon, c.output_size, generator=torch.Generator().manual_seed(seed))


def sharing_weights(model: Forecaster, **changes) -> Forecaster:
    """The same weights under another config (e.g. a shorter lookback: no weight depends on it)."""
    other = Forecaster(model.config.model_copy(update=changes))
    other.load_state_dict(model.state_dict())
    return other


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("output_size", [1, 2])
@pytest.mark.parametrize("horizon", [1, 3])
def test_shapes(strategy, distribution, output_size, horizon):
    model = make(strategy=strategy, distribution=distribution, output_size=output_size, horizon=horizon)
    x, y = window(model), truth(model)
    P = PARAMS[distribution]
    params, state = model(x)
    assert params.shape == (4, horizon, output_size, P)
    assert all(field.shape == (1, 4, 8) for field in state)
    assert type(state) is type(model.initial_state(4))
    assert model(x, targets=y)[0].shape == (4, horizon, output_size, P)  # training mode, teacher forced
    loss, _ = model.loss(x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.predict(x).shape == (4, horizon, output_size)
    assert model.predict_params(x).shape == (4, horizon, output_size, P)
    if distribution != "point":
        assert all(part.shape == (4, horizon, output_size) for part in model.predict_interval(x))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("strategy", ["direct", "seq2seq"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_state_shapes_with_layers_and_directions(cell, strategy, bidirectional):
    model = make(cell=cell, strategy=strategy, num_layers=2, bidirectional=bidirectional, horizon=2)
    _, state = model(window(model, 5))
    K = 2 if bidirectional else 1
    assert all(field.shape == (2 * K, 5, 8) for field in state)
    assert all(f.shape == (2 * K, 5, 8) for f in model.initial_state(5))


def test_gaussian_scale_is_positive():
    model = make(distribution="gaussian", horizon=3)
    with torch.no_grad():
        model.head.bias.view(3, 1, 2)[..., 1] = -50.0  # softplus(-50) ~ 0: the floor holds
    scale = model(window(model))[0][..., 1]
    assert (scale >= 1e-4).all() and (scale < 2e-4).any()


# ---------------------------------------------------------------- no leakage


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("distribution", ["point", "quantile"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_horizon_targets_and_past_covariates_are_never_read(strategy, distribution, training):
    model = make(strategy=strategy, distribution=distribution, horizon=3, output_size=2).train(training)
    x, y = window(model), truth(model)
    c = model.config
    garbage = x.clone()
    garbage[:, c.lookback :, : c.output_size + c.num_past] = 100 * torch.randn(
        4, 3, c.output_size + c.num_past
    )
    torch.testing.assert_close(model(garbage, targets=y)[0], model(x, targets=y)[0])
    torch.testing.assert_close(model.predict(garbage), model.predict(x))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_horizon_rows_known_covariates_reach_its_step_and_no_earlier_one(strategy):
    model = make(strategy=strategy, horizon=3, num_known=2)
    x = window(model)
    before = model.predict(x)
    for h in range(3):
        changed = x.clone()
        changed[:, model.config.lookback + h, -2:] += 1.0
        after = model.predict(changed)
        assert (after[:, h] - before[:, h]).abs().min() > 1e-6, f"step {h} ignores its known covariates"
        if strategy != "direct":  # a rollout is causal; the direct head sees every horizon row at once
            torch.testing.assert_close(after[:, :h], before[:, :h])


def test_past_covariates_of_the_window_are_read():
    model = make(num_past=2)
    x = window(model)
    changed = x.clone()
    changed[:, : model.config.lookback, 1:3] += 1.0
    assert not torch.allclose(model.predict(changed), model.predict(x))


# ---------------------------------------------------------------- rollouts by hand


def recursive_by_hand(model: Forecaster, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Step t reads [y_t, known_{t+1}]; the step reading row lookback-1 predicts horizon step 0."""
    L, O, H = model.config.lookback, model.config.output_size, model.config.horizon
    known = x[..., O:]
    out, state = model.encoder(torch.cat([x[:, :L, :O], known[:, 1 : L + 1]], -1))
    steps = [model.head(out[:, -1:])]  # (B, 1, O, P)
    for h in range(1, H):
        previous = model.output.point(steps[-1][:, 0]) if y is None else y[:, h - 1]
        out, state = model.encoder(torch.cat([previous, known[:, L + h]], -1).unsqueeze(1), state)
        steps.append(model.head(out))
    return torch.cat(steps, 1)


def seq2seq_by_hand(model: Forecaster, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The decoder starts from the (bridged) encoder state and reads [previous y, known of row L+h]."""
    L, O, H = model.config.lookback, model.config.output_size, model.config.horizon
    known = x[..., O + model.config.num_past :]
    _, state = model.encoder(x[:, :L])
    if model.bridge is not None:
        state = model.bridge(state)
    previous, steps = x[:, L - 1, :O], []
    for h in range(H):
        out, state = model.decoder(torch.cat([previous, known[:, L + h]], -1).unsqueeze(1), state)
        steps.append(model.head(out))
        previous = model.output.point(steps[-1][:, 0]) if y is None else y[:, h]
    return torch.cat(steps, 1)


BY_HAND = {"recursive": recursive_by_hand, "seq2seq": seq2seq_by_hand}


@pytest.mark.parametrize("strategy", ["recursive", "seq2seq"])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_eval_rollout_feeds_the_models_own_point_forecast(strategy, distribution):
    model = make(strategy=strategy, distribution=distribution, horizon=4, output_size=2, cell="gru")
    x, y = window(model), truth(model)
    with torch.no_grad():
        expected = BY_HAND[strategy](model.eval(), x, None)
        torch.testing.assert_close(model(x, targets=y)[0], expected)  # eval ignores the targets
    torch.testing.assert_close(model.predict_params(x), model.output.sort(expected))
    torch.testing.assert_close(model.predict(x), model.output.point(expected))


@pytest.mark.parametrize("strategy", ["recursive", "seq2seq"])
@pytest.mark.parametrize("cell", CELLS)
def test_training_with_teacher_forcing_feeds_the_true_previous_target(strategy, cell):
    model = make(strategy=strategy, cell=cell, horizon=4, output_size=2, num_layers=2)
    x, y = window(model), truth(model)
    forced = model(x, targets=y)[0]  # training mode: one teacher-forced pass
    torch.testing.assert_close(forced, BY_HAND[strategy](model, x, y))
    assert not torch.allclose(forced, BY_HAND[strategy](model, x, None))
    torch.testing.assert_close(model(x)[0], BY_HAND[strategy](model, x, None))  # no targets: own forecasts
    later = y.clone()
    later[:, 2] += 1.0  # the truth of step 2 is read by step 3 only
    moved = model(x, targets=later)[0]
    torch.testing.assert_close(moved[:, :3], forced[:, :3])
    assert not torch.allclose(moved[:, 3], forced[:, 3])


def test_bidirectional_seq2seq_starts_the_decoder_from_the_bridged_state():
    model = make(strategy="seq2seq", bidirectional=True, num_layers=2, horizon=3)
    x, y = window(model), truth(model)
    torch.testing.assert_close(model(x, targets=y)[0], seq2seq_by_hand(model, x, y))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], seq2seq_by_hand(model, x, None))
    _, state = model.encoder(x[:, :5])
    h = state.h.view(2, 2, 4, 8).permute(0, 2, 1, 3).reshape(2, 4, 16)  # (L, B, [forward, backward])
    torch.testing.assert_close(model.bridge(state).h, model.bridge.maps[0](h))


@pytest.mark.parametrize("strategy", ["recursive", "seq2seq"])
def test_partial_teacher_forcing_feeds_the_truth_or_the_own_forecast_per_sequence(strategy):
    model = make(strategy=strategy, horizon=2, teacher_forcing=0.5)
    x, y = window(model, 64), truth(model, 64)
    forced, free = BY_HAND[strategy](model, x, y)[:, 1], BY_HAND[strategy](model, x, None)[:, 1]
    torch.manual_seed(3)
    mixed = model(x, targets=y)[0][:, 1]  # step 1 depends only on the coin thrown after step 0
    is_forced = torch.isclose(mixed, forced, atol=1e-6).flatten()
    is_free = torch.isclose(mixed, free, atol=1e-6).flatten()
    assert (is_forced | is_free).all()
    assert 10 < int(is_forced.sum()) < 54
    model.eval()
    torch.testing.assert_close(model(x, targets=y)[0][:, 1], free)


def test_no_teacher_forcing_in_training_is_the_free_rollout():
    model = make(strategy="seq2seq", horizon=3, teacher_forcing=0.0)
    x, y = window(model), truth(model)
    torch.testing.assert_close(model(x, targets=y)[0], seq2seq_by_hand(model, x, None))


# ---------------------------------------------------------------- losses and distributions


def test_point_loss_is_mse_or_mae_of_the_values():
    for name, expected in (("mse", lambda e: (e**2).mean()), ("mae", lambda e: e.abs().mean())):
        model = make(horizon=3, output_size=2, loss=name)
        x, y = window(model), truth(model)
        value, state = model.loss(x, y)
        params, final = model(x)
        torch.testing.assert_close(value, expected(params[..., 0] - y))
        torch.testing.assert_close(state, final)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gaussian_loss_is_the_full_negative_log_likelihood(strategy):
    model = make(strategy=strategy, distribution="gaussian", horizon=3, output_size=2)
    x, y = window(model), truth(model)
    value, _ = model.loss(x, y)
    mean, scale = model(x, targets=y)[0].unbind(-1)
    by_hand = (torch.log(scale) + (y - mean) ** 2 / (2 * scale**2) + 0.5 * math.log(2 * math.pi)).mean()
    torch.testing.assert_close(value, by_hand)
    torch.testing.assert_close(
        value, torch.nn.functional.gaussian_nll_loss(mean, y, scale**2, full=True, eps=1e-12)
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_quantile_loss_is_the_mean_pinball_loss(strategy):
    model = make(strategy=strategy, distribution="quantile", quantiles=[0.1, 0.5, 0.75], horizon=3)
    x, y = window(model), truth(model)
    value, _ = model.loss(x, y)
    params = model(x, targets=y)[0]
    total = 0.0
    for i, q in enumerate([0.1, 0.5, 0.75]):
        error = y[..., 0] - params[..., 0, i]
        total = total + torch.where(error >= 0, q * error, (q - 1) * error).mean()
    torch.testing.assert_close(value, total / 3)


def crossing_quantile_model() -> Forecaster:
    """A direct quantile model whose raw outputs cross: the bias puts q=0.1 high and q=0.9 low."""
    model = make(distribution="quantile", horizon=2)
    with torch.no_grad():
        model.head.bias.view(2, 1, 3).copy_(torch.tensor([5.0, 0.0, -5.0]))
    return model


def test_quantile_predictions_are_sorted_and_never_cross():
    model = crossing_quantile_model()
    x = window(model)
    raw = model(x)[0]
    assert (raw.diff(dim=-1) < 0).all()  # the raw outputs do cross
    params = model.predict_params(x)
    assert (params.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(params, raw.sort(-1).values)
    point, lower, upper = model.predict_interval(x, level=0.8)
    assert (lower <= point).all() and (point <= upper).all()
    torch.testing.assert_close(point, params[..., 1])
    torch.testing.assert_close(model.predict(x), point)
    torch.testing.assert_close((lower, upper), (params[..., 0], params[..., 2]))


def test_quantile_interval_reads_the_matching_quantiles():
    model = make(distribution="quantile", quantiles=[0.05, 0.25, 0.5, 0.75, 0.95], horizon=2)
    x = window(model)
    params = model.predict_params(x)
    for level, (low, high) in ((0.9, (0, 4)), (0.5, (1, 3))):
        point, lower, upper = model.predict_interval(x, level=level)
        torch.testing.assert_close(
            (point, lower, upper), (params[..., 2], params[..., low], params[..., high])
        )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gaussian_interval_is_mean_plus_minus_z_scale(strategy):
    model = make(strategy=strategy, distribution="gaussian", horizon=2)
    x = window(model)
    mean, scale = model.predict_params(x).unbind(-1)
    point, lower, upper = model.predict_interval(x, level=0.8)
    torch.testing.assert_close(point, mean)
    torch.testing.assert_close(lower, mean - 1.2816 * scale, atol=1e-4, rtol=0)
    torch.testing.assert_close(upper, mean + 1.2816 * scale, atol=1e-4, rtol=0)
    _, lower95, upper95 = model.predict_interval(x, level=0.95)
    torch.testing.assert_close(upper95 - lower95, 2 * 1.95996 * scale, atol=1e-4, rtol=0)
    torch.testing.assert_close(model.predict(x), mean)


@pytest.mark.parametrize(
    ("options", "level", "message"),
    [
        ({"distribution": "point"}, 0.8, r"a point forecaster has no intervals: build it with distribution="),
        (
            {"distribution": "quantile"},
            0.5,
            r"level 0.5 needs quantiles 0.25 and 0.75, but the model has \[0.1, 0.5, 0.9\]: "
            r"available levels are \[0.8\]",
        ),
        ({"distribution": "gaussian"}, 1.0, r"level must be a coverage in \(0, 1\).*got 1.0"),
        ({"distribution": "quantile"}, 0, r"level must be a coverage in \(0, 1\).*got 0$"),
    ],
)
def test_unavailable_interval_levels_are_refused(options, level, message):
    model = make(**options)
    with pytest.raises(ConfigError, match=message):
        model.predict_interval(window(model), level=level)


# ---------------------------------------------------------------- training


def ar1_windows(count: int, seed: int, lookback: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of y_t = 0.8 y_{t-1} + N(0, 1), started from the stationary law; horizon 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.empty(count, lookback + 1)
    y[:, 0] = torch.randn(count, generator=g) / math.sqrt(1 - 0.8**2)
    for t in range(1, lookback + 1):
        y[:, t] = 0.8 * y[:, t - 1] + torch.randn(count, generator=g)
    inputs = torch.cat([y[:, :lookback], torch.zeros(count, 1)], 1).unsqueeze(-1)  # (count, lookback + 1, 1)
    return inputs, y[:, lookback:].unsqueeze(-1)  # targets (count, 1, 1)


@pytest.mark.parametrize("distribution", ["gaussian", "quantile"])
def test_80_percent_intervals_cover_about_80_percent_of_held_out_ar1_values(distribution):
    torch.manual_seed(0)
    model = Forecaster(
        ForecasterConfig(lookback=5, horizon=1, cell="gru", hidden_size=8, distribution=distribution)
    )
    x, y = ar1_windows(1024, seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 300)  # steadier than a flat rate
    for _ in range(300):
        loss, _ = model.loss(x, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    held_x, held_y = ar1_windows(4000, seed=1)
    _, lower, upper = model.predict_interval(held_x, level=0.8)
    coverage = ((lower <= held_y) & (held_y <= upper)).float().mean().item()
    assert 0.7 <= coverage <= 0.9, coverage
    error = model.predict(held_x) - 0.8 * held_x[:, 4:5]  # the conditional mean is 0.8 y_{t-1}
    assert error.pow(2).mean().sqrt() < 0.3


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_loss_falls_with_a_few_adam_steps(strategy, distribution):
    model = make(strategy=strategy, distribution=distribution, cell="gru", horizon=3)
    x = window(model, 32)
    y = 0.5 * x[:, 4:5, :1] + x[:, 5:, -1:]  # (32, 3, 1): the last observed value plus a known covariate
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        value, _ = model.loss(x, y)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        losses.append(value.item())
    if distribution == "gaussian":  # an NLL can go negative: ask for a fall in nats
        assert losses[-1] < losses[0] - 0.5
    else:
        assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- padding, state, old behaviour


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["fused", "cell-path"])
@pytest.mark.parametrize("strategy", ["direct", "seq2seq"])
def test_padding_gives_each_window_its_own_prediction(cell, bidirectional, layer_norm, strategy):
    model = make(
        cell=cell,
        bidirectional=bidirectional,
        layer_norm=layer_norm,
        num_layers=2,
        horizon=2,
        strategy=strategy,
    )
    lengths = [5, 3, 1, 4]
    x = window(model)
    x[:, :5] *= 5  # padded rows hold garbage, not zeros, so reading them would show
    params, state = model(x, lengths=lengths)
    for i, n in enumerate(lengths):
        short = sharing_weights(model, lookback=n)
        alone, alone_state = short(torch.cat([x[i : i + 1, :n], x[i : i + 1, 5:]], 1))
        torch.testing.assert_close(params[i : i + 1], alone, atol=1e-5, rtol=1e-4)
        for field, alone_field in zip(state, alone_state, strict=True):
            torch.testing.assert_close(field[:, i : i + 1], alone_field, atol=1e-5, rtol=1e-4)


def test_lengths_as_tensor_and_list_agree():
    model = make(bidirectional=True)
    x = window(model, 3)
    torch.testing.assert_close(model(x, lengths=[5, 2, 3])[0], model(x, lengths=torch.tensor([5, 2, 3]))[0])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_carried_state_continues_the_window(cell, strategy):
    model = make(cell=cell, num_layers=2, lookback=9, strategy=strategy, horizon=2)
    x = window(model, 3)
    whole, whole_state = model(x)
    rest = sharing_weights(model, lookback=5)
    head = x[:, :4] if strategy != "recursive" else torch.cat([x[:, :4, :1], x[:, 1:5, 1:]], -1)
    _, state = model.encoder(head)  # the first 4 rows, as the encoder reads them
    second, final = rest(x[:, 4:], state=state)
    torch.testing.assert_close(second, whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final, whole_state, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model(x, state=model.initial_state(3))[0], whole)


@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_reads_forward_at_last_step_and_backward_at_step_zero(cell):
    model = make(
        cell=cell, bidirectional=True, num_layers=2, horizon=3, output_size=2, num_known=0, num_past=1
    )
    x, lengths = window(model, 3), [5, 2, 4]
    outputs, state = model.encoder(x[:, :5], lengths=lengths)  # (3, 5, 16); h (4, 3, 8)
    forward_last = torch.stack([outputs[b, n - 1, :8] for b, n in enumerate(lengths)])  # (3, 8)
    backward_first = outputs[:, 0, 8:]  # (3, 8)
    # each half is where its direction has read the whole sequence: the top layer's final h
    torch.testing.assert_close(forward_last, state.h[2])
    torch.testing.assert_close(backward_first, state.h[3])
    expected = model.head(torch.cat([forward_last, backward_first], -1)).view(3, 3, 2, 1)
    torch.testing.assert_close(model(x, lengths=lengths)[0], expected)


@pytest.mark.parametrize("cell", CELLS)
def test_direct_point_forecaster_is_a_torch_rnn_and_a_linear_map(cell):
    """Without known covariates the direct point model is the old many-to-one one: same keys, same maths."""
    model = make(cell=cell, num_layers=2, horizon=3, output_size=2, num_known=0, num_past=1)
    keys = {k for k in model.state_dict() if not k.startswith("encoder.")}
    assert keys == {"head.weight", "head.bias"}
    torch_rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        3, 8, 2, batch_first=True
    )
    encoder = {
        k.removeprefix("encoder."): v for k, v in model.state_dict().items() if k.startswith("encoder.")
    }
    torch_rnn.load_state_dict(encoder)
    x = window(model)
    expected = model.head(torch_rnn(x[:, :5])[0][:, -1]).view(4, 3, 2)
    torch.testing.assert_close(model.predict(x), expected, atol=1e-5, rtol=1e-4)


def test_predict_is_eval_mode_without_gradients_and_restores_the_mode():
    model = make(zoneout=0.3, recurrent_dropout=0.3)
    x = window(model, 2)
    predictions = model.predict(x)
    assert not predictions.requires_grad and model.training
    model.eval()
    torch.testing.assert_close(predictions, model(x)[0][..., 0])
    assert not model.training


def test_dropout_reaches_the_rnns_only_between_layers(recwarn):
    assert make(dropout=0.3).encoder.dropout == 0.0
    assert make(dropout=0.3, num_layers=2).encoder.dropout == 0.3
    assert make(dropout=0.3, num_layers=2, strategy="seq2seq").decoder.dropout == 0.3
    assert not [w for w in recwarn if "dropout" in str(w.message)]


def test_relu_rnn_config_builds_relu_rnns():
    model = make(cell="rnn", nonlinearity="relu", strategy="seq2seq")
    assert model.encoder.nonlinearity == "relu" and model.decoder.nonlinearity == "relu"


# ---------------------------------------------------------------- config and input errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hidden_size": 0}, r"hidden_size: Input should be greater than 0 \(got 0\)"),
        ({"lookback": 0}, r"lookback: Input should be greater than 0"),
        ({"horizon": -1}, r"horizon: Input should be greater than 0"),
        ({"num_past": -1}, r"num_past: Input should be greater than or equal to 0"),
        ({"cell": "transformer"}, r"cell: Input should be 'rnn', 'lstm' or 'gru'"),
        ({"strategy": "dirrect"}, r"strategy: Input should be 'direct', 'recursive' or 'seq2seq'"),
        ({"distribution": "normal"}, r"distribution: Input should be 'point', 'gaussian' or 'quantile'"),
        ({"dropout": 1.0}, r"dropout: Input should be less than 1"),
        ({"zoneout": -0.1}, r"zoneout: Input should be greater than or equal to 0"),
        (
            {"teacher_forcing": 1.5, "strategy": "seq2seq"},
            r"teacher_forcing: Input should be less than or equal to 1",
        ),
        ({"loss": "huber"}, r"loss: Input should be 'mse' or 'mae'"),
        ({"init": "orthogonl"}, r"unknown initialiser 'orthogonl'.*'orthogonal'"),
        ({"nonlinearity": "relu"}, r"nonlinearity='relu' applies to cell='rnn' only"),
        ({"hiden_size": 8}, r"unknown key 'hiden_size'; did you mean 'hidden_size'"),
        ({"lookback": None}, r"lookback: Input should be a valid integer"),
        (
            {"input_size": 4, "num_known": 2},
            r"input_size=4 must equal output_size \+ num_past \+ num_known = 1 \+ 0 \+ 2 = 3: "
            r"drop input_size",
        ),
        (
            {"strategy": "recursive", "num_past": 2},
            r"strategy='recursive' needs num_past=0, got 2: past covariates are unknown in the horizon.*"
            r"use strategy='direct' or 'seq2seq', or move covariates known in advance to num_known",
        ),
        (
            {"strategy": "recursive", "bidirectional": True},
            r"strategy='recursive' needs bidirectional=False.*use strategy='seq2seq'",
        ),
        ({"quantiles": [0.1, 0.9]}, r"quantiles must contain 0.5 \(the median is the point forecast\)"),
        (
            {"quantiles": [0.5, 0.1, 0.9]},
            r"quantiles must be sorted ascending without repeats: use \[0.1, 0.5, 0.9\]",
        ),
        ({"quantiles": [0.1, 0.5, 0.5]}, r"sorted ascending without repeats: use \[0.1, 0.5\]"),
        (
            {"quantiles": [0.0, 0.5, 1.0]},
            r"quantiles must lie strictly between 0 and 1, got \[0.0, 0.5, 1.0\]",
        ),
        ({"distribution": "gaussian", "loss": "mae"}, r"loss='mae' applies to distribution='point' only"),
        ({"teacher_forcing": 0.5}, r"teacher_forcing applies to strategy='recursive' or 'seq2seq'"),
    ],
)
def test_config_validation_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        validate(ForecasterConfig, {"lookback": 5, **data})


def test_lookback_is_required():
    with pytest.raises(ConfigError, match=r"missing key 'lookback'"):
        validate(ForecasterConfig, {"horizon": 2})


def test_input_size_is_derived_and_accepted_when_it_agrees():
    config = validate(
        ForecasterConfig, {"lookback": 5, "input_size": 4, "output_size": 2, "num_past": 1, "num_known": 1}
    )
    assert config.num_features == 4
    assert validate(ForecasterConfig, {"lookback": 5, "num_known": 2}).num_features == 3


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            torch.zeros(4, 5, 3),
            r"inputs must be \(B, lookback \+ horizon, D\) = \(B, 7, 3\), got \(4, 5, 3\): "
            r"append the horizon rows \(known covariates filled, the other columns zero\)",
        ),
        (torch.zeros(4, 7, 2), r"= \(B, 7, 3\), got \(4, 7, 2\)$"),
        (torch.zeros(7, 3), r"= \(B, 7, 3\), got \(7, 3\)$"),
        (
            [[0.0] * 3] * 7,
            r"inputs must be a torch.Tensor \(B, lookback \+ horizon, D\) = \(B, 7, 3\), got list",
        ),
    ],
)
def test_inputs_of_the_wrong_shape_are_refused(inputs, message):
    model = make(horizon=2)
    with pytest.raises(ShapeError, match=message):
        model(inputs)
    with pytest.raises(ShapeError, match=message):
        model.predict(inputs)


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
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_targets_of_the_wrong_shape_are_refused(targets, message, strategy):
    model = make(horizon=3, strategy=strategy)
    with pytest.raises(ShapeError, match=message):
        model.loss(window(model), targets)


def test_recursive_refuses_padded_windows_and_lengths_must_fit_the_lookback():
    model = make(strategy="recursive")
    with pytest.raises(ConfigError, match=r"strategy='recursive' needs full windows \(lengths=None\)"):
        model(window(model), lengths=[5, 5, 4, 3])
    direct = make()
    with pytest.raises(ShapeError, match=r"lengths must lie in \[1, 5\].*got min 1, max 6"):
        direct(window(direct), lengths=[6, 5, 4, 1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_build_model_from_a_mapping_and_from_its_dump(strategy):
    model = build_model({"name": "forecaster", "lookback": 10})
    assert isinstance(model, Forecaster) and model.config.cell == "lstm" and model.config.hidden_size == 64
    assert model(torch.randn(2, 11, 1))[0].shape == (2, 1, 1, 1)
    options = {
        "strategy": strategy,
        "distribution": "quantile",
        "horizon": 2,
        "num_known": 1,
        "hidden_size": 8,
    }
    model = build_model(
        {"name": "forecaster", "lookback": 4, "bidirectional": strategy == "seq2seq", **options}
    )
    again = build_model(model.config.model_dump())
    assert again.config == model.config
    again.load_state_dict(model.state_dict())
    x = window(model, 2)
    torch.testing.assert_close(again.predict_params(x), model.predict_params(x))
    with pytest.raises(ConfigError, match="hidden_size"):
        build_model({"name": "forecaster", "lookback": 10, "hidden_size": 0})
