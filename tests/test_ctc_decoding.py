"""CTC decoding: paths collapse as hand-made alignments say, greedy takes the best path, and prefix
beam search finds the most likely labelling with its probability (checked by enumerating every
path and against torch's CTC loss)."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.decoding.ctc import collapse, ctc_greedy, ctc_prefix_beam
from rnnkit.errors import ShapeError

_, A, B = 0, 1, 2  # blank, and two labels


@pytest.mark.parametrize(
    "path, labels",
    [
        ([A, A, _, A, B, B], [A, A, B]),  # a blank separates a repeated label
        ([A, A, A], [A]),  # repeats merge
        ([_, _, _], []),
        ([_, A, _, _, B, _], [A, B]),
        ([B, A, B], [B, A, B]),
    ],
)
def test_a_path_collapses_to_its_labelling(path, labels):
    assert collapse(path) == labels


def test_greedy_decoding_reads_the_best_path_of_each_sequence_up_to_its_length():
    path = torch.tensor([[A, A, _, A, B, B], [B, _, B, A, A, A]])
    log_probs = torch.log_softmax(F.one_hot(path, 3).float() * 5, -1)  # (2, 6, 3): the path wins each frame
    assert ctc_greedy(log_probs) == [[A, A, B], [B, B, A]]
    assert ctc_greedy(log_probs, lengths=[6, 3]) == [[A, A, B], [B, B]]
    assert ctc_greedy(log_probs[0]) == [[A, A, B]]


def test_the_best_labelling_is_not_always_the_best_path():
    log_probs = torch.log(torch.tensor([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]]).clamp_min(1e-12))
    assert ctc_greedy(log_probs) == [[]]  # the best path is blank, blank: 0.36
    labels, log_p = ctc_prefix_beam(log_probs)[0]
    assert labels == [A] and log_p == pytest.approx(math.log(0.64))  # (a, a), (a, _), (_, a)


def test_prefix_beam_search_matches_every_path_summed_and_torchs_ctc_loss():
    torch.manual_seed(0)
    T, C = 5, 3
    log_probs = torch.log_softmax(torch.randn(T, C), -1).double()
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(C), repeat=T):  # all 3^5 paths
        p = float(sum(log_probs[t, c] for t, c in enumerate(path)).exp())
        key = tuple(collapse(path))
        totals[key] = totals.get(key, 0.0) + p
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    beam = ctc_prefix_beam(log_probs, beam_width=64)  # wide: nothing is pruned
    assert [tuple(labels) for labels, _ in beam[:5]] == [labels for labels, _ in ranked[:5]]
    for labels, log_p in beam[:5]:
        assert math.exp(log_p) == pytest.approx(totals[tuple(labels)], rel=1e-9)
        if labels:  # torch's CTC loss is -log P(labels) summed over the same paths
            loss = F.ctc_loss(log_probs[:, None], torch.tensor([labels]), [T], [len(labels)], reduction="sum")
            assert -float(loss) == pytest.approx(log_p, rel=1e-9)
    assert np.isclose(sum(math.exp(lp) for _, lp in ctc_prefix_beam(log_probs, beam_width=200)), 1.0)


def test_bad_shapes_are_named():
    with pytest.raises(ShapeError, match=r"one sequence \(T, C\)"):
        ctc_prefix_beam(torch.zeros(2, 3, 4))
    with pytest.raises(ShapeError, match=r"\(B, T, C\) or \(T, C\)"):
        ctc_greedy(torch.zeros(3))
