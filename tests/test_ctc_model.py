"""The CTC acoustic model: its per-frame outputs do not depend on batch padding, it learns to emit
label sequences of another length than its inputs, and labels it cannot align are refused."""

import pytest
import torch

from rnnkit.decoding.ctc import ctc_greedy
from rnnkit.errors import DataError, ShapeError
from rnnkit.models import build_model


def ctc(**options):
    torch.manual_seed(0)
    return build_model({"name": "ctc", "input_size": 3, "num_labels": 2, "hidden_size": 16, **options})


@pytest.mark.parametrize("options", [{}, {"bidirectional": False, "num_layers": 2, "cell": "gru"}])
def test_an_utterances_outputs_do_not_depend_on_the_padding_of_its_batch(options):
    model = ctc(**options).eval()
    x, lengths = torch.randn(3, 9, 3), torch.tensor([9, 5, 2])
    x[torch.arange(9)[None, :] >= lengths[:, None]] = 40.0  # garbage where padded
    batched = model(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(batched[i, :n], model(x[i : i + 1, :n])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.exp().sum(-1), torch.ones(3, 9))  # a distribution per frame


def toy_batch(n: int = 64):
    """Utterances of 2 or 3 'words' of 4 frames each: word 0 is feature 0 high, word 1 feature 1 high."""
    g = torch.Generator().manual_seed(1)
    words = torch.randint(0, 2, (n, 3), generator=g)
    counts = torch.randint(2, 4, (n,), generator=g)
    x = torch.randn(n, 12, 3, generator=g) * 0.3
    targets = torch.full((n, 3), -100)
    for i in range(n):
        for j in range(int(counts[i])):
            x[i, 4 * j : 4 * j + 4, words[i, j]] += 2.0
            targets[i, j] = words[i, j]
    return x, targets, counts * 4


def test_it_learns_to_emit_the_label_sequences():
    model = ctc()
    x, targets, lengths = toy_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss, _ = model.loss(x, targets, lengths)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    decoded = [
        [c - 1 for c in row] for row in ctc_greedy(model.predict(x, lengths), lengths)
    ]  # class 0: blank
    expected = [[int(t) for t in row if t != -100] for row in targets]
    assert sum(d == e for d, e in zip(decoded, expected, strict=True)) / len(expected) > 0.9


def test_labels_that_cannot_be_aligned_or_do_not_exist_are_refused():
    model, x = ctc(), torch.randn(2, 3, 3)
    with pytest.raises(DataError, match=r"utterances \[1\] have more labels .* than frames"):
        model.loss(x, torch.tensor([[0, 1, -100], [1, 1, 0]]))  # 1 1 0 needs 4 frames: a blank between
    with pytest.raises(DataError, match=r"label ids must lie in \[0, 2\), got 0 to 5"):
        model.loss(x, torch.tensor([[0, 5], [1, -100]]))
    with pytest.raises(ShapeError, match=r"targets must be \(B, S\)"):
        model.loss(x, torch.tensor([0, 1]))
