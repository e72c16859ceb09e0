"""The sequence classifier over numbers (recordings of sensor channels): no embedding, an optional
convolutional front end and an optional hierarchy of recurrences over chunks; a recording's
prediction does not depend on the padding of its batch."""

import pytest
import torch

from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.models import build_model
from rnnkit.models.encoder import final_states

C = 3
OPTIONS = {
    "plain": {},
    "conv": {"conv_channels": [8, 6], "conv_kernel": 3},
    "hierarchy": {"chunk_size": 4},
    "conv+hierarchy": {"conv_channels": [6], "chunk_size": 3, "bidirectional": True},
}


def classifier(**options):
    torch.manual_seed(0)
    config = {"name": "classifier", "input_size": C, "num_classes": 4, "hidden_size": 5, **options}
    return build_model(config).eval()


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_recordings_prediction_does_not_depend_on_the_padding_of_its_batch(name, pooling):
    model = classifier(pooling=pooling, **OPTIONS[name])
    lengths = torch.tensor([11, 7, 2, 5])
    x = torch.randn(4, 11, C)
    x[torch.arange(11)[None, :] >= lengths[:, None]] = 1e3  # garbage where the batch is padded
    batched = model(x, lengths).logits
    alone = torch.cat([model(x[i : i + 1, :n]).logits for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_the_front_end_and_the_hierarchy_change_the_model():
    x, lengths = torch.randn(2, 12, C), torch.tensor([12, 9])
    plain = classifier()(x, lengths).logits
    for name in ("conv", "hierarchy"):
        assert not torch.allclose(classifier(**OPTIONS[name])(x, lengths).logits, plain)


def test_the_hierarchy_reads_each_chunk_alone_then_the_chunks_in_order():
    """Two chunks of 4 steps: the lower recurrence reads each from a fresh state, the upper one
    reads their final states in order, and (last pooling) the head reads its final state."""
    model = classifier(chunk_size=4)
    x = torch.randn(1, 8, C)
    first, second = model.encoder(x[:, :4]), model.encoder(x[:, 4:])
    summaries = torch.stack([final_states(first.state, 1), final_states(second.state, 1)], 1)  # (1, 2, H)
    expected = model.head(final_states(model.upper(summaries).state, 1))
    torch.testing.assert_close(model(x).logits, expected)


def test_a_numeric_classifier_learns_a_toy_problem():
    torch.manual_seed(1)
    x = torch.randn(64, 10, C)
    labels = (x[:, :, 0].mean(1) > 0).long() + 2 * (x[:, :, 1].mean(1) > 0).long()  # 4 classes
    model = classifier(conv_channels=[8], chunk_size=5, hidden_size=16).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss, _ = model.loss(x, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert (model.predict(x).argmax(-1) == labels).float().mean() > 0.9


@pytest.mark.parametrize(
    "config, message",
    [
        ({"vocab_size": 10}, "give vocab_size .* or input_size .*, one of them"),
        ({"input_size": None}, "give vocab_size .* or input_size .*, one of them"),
        ({"conv_channels": [4], "conv_kernel": 4}, "conv_kernel must be odd"),
    ],
)
def test_options_that_do_not_fit_together_are_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        build_model({"name": "classifier", "input_size": C, "num_classes": 2, **config})


def test_bad_numeric_inputs_say_what_is_wrong():
    model = classifier()
    with pytest.raises(ShapeError, match=r"inputs must be \(B, T, input_size=3\) numbers, got \(2, 5, 4\)"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(ShapeError, match="floating point"):
        model(torch.ones(2, 5, C, dtype=torch.long))
    bad = torch.randn(2, 5, C)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or infinity"):
        model(bad)
    with pytest.raises(ConfigError, match="no embedding"):
        model.load_embeddings(torch.zeros(3, 3))
