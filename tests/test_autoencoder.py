"""The recurrent autoencoder behind reconstruction-error anomaly scores: it rebuilds windows of a
signal it was trained on, rebuilds an unusual window worse, and a window's errors do not depend on
the padding of its batch."""

import pytest
import torch

from rnnkit.errors import ConfigError
from rnnkit.models import build_model


def autoencoder(**options):
    torch.manual_seed(0)
    return build_model(
        {"name": "autoencoder", "input_size": 2, "hidden_size": 16, "latent_size": 8, **options}
    )


def sine_windows(n: int = 64, steps: int = 24) -> torch.Tensor:
    phase = torch.rand(n, 1) * 6.28
    t = torch.arange(steps) * 0.4 + phase  # (n, steps)
    return torch.stack([torch.sin(t), torch.cos(t)], -1)  # (n, steps, 2)


@pytest.mark.parametrize("options", [{}, {"bidirectional": True, "num_layers": 2, "cell": "gru"}])
def test_a_windows_errors_do_not_depend_on_the_padding_of_its_batch(options):
    model = autoencoder(**options).eval()
    x, lengths = torch.randn(3, 10, 2), torch.tensor([10, 6, 3])
    x[torch.arange(10)[None, :] >= lengths[:, None]] = 50.0  # garbage where padded
    batched = model.errors(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(batched[i, :n], model.errors(x[i : i + 1, :n])[0], atol=1e-5, rtol=1e-5)
        assert batched[i, n:].abs().sum() == 0


def test_it_learns_to_rebuild_normal_windows_and_rebuilds_an_unusual_one_worse():
    torch.manual_seed(1)
    model, x = autoencoder(), sine_windows()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    first = model.loss(x, x)[0].item()
    for _ in range(200):
        loss, _ = model.loss(x, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 10
    normal = sine_windows(8)
    unusual = normal.clone()
    unusual[:, 10:13, 0] += 3.0  # a spike in channel 0
    scores_normal, scores_unusual = model.predict(normal), model.predict(unusual)
    assert scores_unusual[:, 10:13].mean() > 10 * scores_normal[:, 10:13].mean()


def test_targets_must_be_the_windows_themselves():
    model, x = autoencoder(), torch.randn(2, 5, 2)
    with pytest.raises(ConfigError, match=r"targets are its inputs \(2, 5, 2\), got \(2,\)"):
        model.loss(x, torch.zeros(2))
