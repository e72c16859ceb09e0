"""Options that make a forecaster robust on small series with level shifts: reversible instance
normalisation (RevIN) and a linear autoregressive highway (LSTNet)."""

from pathlib import Path

import pytest
import torch

from rnnkit.errors import ConfigError
from rnnkit.models import build_model
from rnnkit.models.forecast_heads import RevIN
from rnnkit.run import load_run_config, resolve_model

L, H = 8, 3


def forecaster(**options):
    torch.manual_seed(0)
    return build_model(
        {"name": "forecaster", "lookback": L, "horizon": H, "hidden_size": 8, **options}
    ).eval()


def test_revin_normalise_then_inverse_is_the_identity_and_ignores_padding():
    torch.manual_seed(0)
    revin = RevIN(2)
    with torch.no_grad():
        revin.log_gamma.copy_(torch.tensor([0.3, -0.5]))
        revin.beta.copy_(torch.tensor([1.0, -2.0]))
    window = torch.randn(4, L, 2, dtype=torch.float64) * 5 + 100
    lengths = torch.tensor([8, 5, 3, 1])
    mean, std = revin.statistics(window, lengths)
    padded = window.clone()
    padded[1, 5:] = 1e6  # rows past a window's length do not count
    assert torch.equal(revin.statistics(padded, lengths)[0], mean)
    torch.testing.assert_close(mean[1, 0], window[1, :5].mean(0))
    torch.testing.assert_close(std[1, 0], (window[1, :5].var(0, unbiased=False) + revin.eps).sqrt())
    values = torch.randn(4, H, 2, dtype=torch.float64) * 5 + 100
    scale, offset = revin.inverse(mean, std)
    torch.testing.assert_close(revin.normalise(values, mean, std) * scale + offset, values)


@pytest.mark.parametrize("distribution", ["point", "gaussian", "quantile"])
@pytest.mark.parametrize("strategy", ["direct", "recursive", "seq2seq"])
def test_a_revin_forecaster_moves_with_the_level_and_scale_of_its_window(strategy, distribution):
    model = forecaster(revin=True, strategy=strategy, distribution=distribution).double()
    model.revin.eps = 0.0  # exact: the variance floor is the one term that does not scale
    x = torch.randn(4, L + H, 1, dtype=torch.float64)
    shifted = x * 3 + 50  # a level and spread far outside anything seen (the horizon rows are unread)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(shifted), model.predict(x) * 3 + 50)
        if distribution != "point":
            got, expected = model.predict_interval(shifted), model.predict_interval(x)
            torch.testing.assert_close(got.lower, expected.lower * 3 + 50)
            torch.testing.assert_close(got.upper, expected.upper * 3 + 50)


def test_revin_trains_on_the_original_scale_and_gets_gradients():
    model = forecaster(revin=True).train()
    x, y = torch.randn(6, L + H, 1), torch.randn(6, H, 1)
    loss, _ = model.loss(x, y)
    loss.backward()
    assert model.revin.log_gamma.grad is not None and model.revin.beta.grad.abs().sum() > 0
    params, _ = model(x)
    assert loss.item() == pytest.approx(torch.mean((params[..., 0] - y) ** 2).item(), rel=1e-6)


@pytest.mark.parametrize("revin", [False, True])
def test_a_zeroed_highway_recovers_the_plain_model_and_otherwise_adds_its_linear_map(revin):
    plain = forecaster(revin=revin)
    highway = forecaster(revin=revin, highway_window=4)
    missing, unexpected = highway.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"highway.weight", "highway.bias"} and not unexpected
    x = torch.randn(5, L + H, 1)
    with torch.no_grad():
        highway.highway.weight.zero_()
        highway.highway.bias.zero_()
        torch.testing.assert_close(highway.predict(x), plain.predict(x))
        highway.highway.weight.fill_(0.25)  # the mean of the last four values
        highway.highway.bias.fill_(1.0)
        if not revin:
            expected = plain.predict(x) + x[:, L - 4 : L, :1].mean(1, keepdim=True) + 1.0
            torch.testing.assert_close(highway.predict(x), expected)


def test_the_highway_reads_each_windows_last_observed_rows():
    model = forecaster(highway_window=2)
    x = torch.randn(2, L + H, 1)
    lengths = torch.tensor([L, 5])
    by_hand = torch.stack([x[0, L - 2 : L, 0], x[1, 3:5, 0]])  # (B, 2)
    expected = model.highway(by_hand)[..., None]  # (B, H, 1)
    torch.testing.assert_close(model._highway(x, lengths), expected)


def test_a_highway_longer_than_the_window_is_refused():
    with pytest.raises(
        ConfigError, match=r"highway_window=9 reads more rows than a window has \(lookback=8\)"
    ):
        forecaster(highway_window=9)


@pytest.mark.parametrize("section", [{}, {"revin": False}, {"name": "forecast_ensemble", "members": 2}])
def test_forecast_runs_turn_revin_on_unless_the_model_section_says_otherwise(section):
    """The forecast task suggests RevIN (benchmarks/forecast_quality.py chose it); the model's own
    default stays off, so a bundle saved before the key existed loads as the plain model it was."""
    config = load_run_config(Path(__file__).resolve().parents[1] / "configs" / "sine.yaml")
    config.model = {**config.model, **section}
    assert resolve_model(config).revin is section.get("revin", True)
    assert build_model({"name": "forecaster", "lookback": L, "horizon": H}).config.revin is False
