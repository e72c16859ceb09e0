"""The linear-chain CRF against brute-force enumeration of every tag path, and the BIO/BIOES rules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnkit.errors import DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.crf import CRF, parse_tag, scheme_constraints, transition_allowed

BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES_TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]


def _crf(num_tags: int, constraints=None, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags, constraints).double()
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


@torch.no_grad()
def _score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """s(path) summed term by term: emissions (n, C) of one sequence."""
    start, transitions, end = crf.scores()
    total = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    return float(total + sum(transitions[a, b] for a, b in itertools.pairwise(path)))


def _brute(crf: CRF, emissions: torch.Tensor) -> tuple[float, list[int]]:
    """log Z and the best path of one sequence (n, C) by scoring all C^n paths."""
    scored = {
        p: _score(crf, emissions, p) for p in itertools.product(range(crf.num_tags), repeat=len(emissions))
    }
    best = max(scored, key=scored.get)
    return math.log(sum(math.exp(s) for s in scored.values())), list(best)


LENGTHS = [4, 3, 1, 2]


@pytest.fixture
def batch():
    torch.manual_seed(1)
    emissions = torch.randn(len(LENGTHS), max(LENGTHS), 3, dtype=torch.float64)
    return emissions, lengths_to_mask(torch.tensor(LENGTHS), max(LENGTHS))


def test_partition_and_viterbi_equal_brute_force_over_every_path(batch):
    emissions, mask = batch
    crf = _crf(3)
    log_z = crf.log_partition(emissions, mask)
    paths = crf.viterbi(emissions, mask)
    for b, n in enumerate(LENGTHS):
        expected_z, expected_path = _brute(crf, emissions[b, :n])
        assert log_z[b].item() == pytest.approx(expected_z, rel=1e-12)
        assert paths[b] == expected_path


def test_path_score_and_likelihoods_sum_to_one(batch):
    emissions, mask = batch
    crf = _crf(3)
    tags = torch.tensor([[0, 2, 1, 1], [2, 2, 0, -100], [1, -100, -100, -100], [0, 1, -100, -100]])
    scores = crf.path_score(emissions, tags, mask)
    for b, n in enumerate(LENGTHS):
        assert scores[b].item() == pytest.approx(_score(crf, emissions[b, :n], tuple(tags[b, :n].tolist())))
    n = LENGTHS[1]
    total = 0.0
    for path in itertools.product(range(3), repeat=n):
        tags = torch.tensor([list(path)])
        total += crf.log_likelihood(emissions[1:2, :n], tags).exp().item()
    assert total == pytest.approx(1.0, rel=1e-12)


def test_gradients_match_finite_differences_in_float64(batch):
    emissions, mask = batch
    crf = _crf(3)
    tags = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]])

    def log_likelihood(emissions, transitions, start, end):
        parameters = {"transitions": transitions, "start": start, "end": end}
        return torch.func.functional_call(crf, parameters, (emissions, tags, mask), strict=False)

    parameters = (crf.transitions, crf.start, crf.end)
    inputs = [emissions.clone().requires_grad_(), *(p.detach().clone().requires_grad_() for p in parameters)]
    assert torch.autograd.gradcheck(log_likelihood, inputs)


def test_padding_changes_nothing(batch):
    emissions, mask = batch
    crf = _crf(3)
    noisy = emissions.masked_fill(~mask.unsqueeze(-1), 1e3)  # huge scores on padded steps
    tags = torch.tensor([[0, 2, 1, 1], [2, 2, 0, -100], [1, -100, -100, -100], [0, 1, -100, -100]])
    assert torch.allclose(crf.log_likelihood(noisy, tags, mask), crf.log_likelihood(emissions, tags, mask))
    assert crf.viterbi(noisy, mask) == crf.viterbi(emissions, mask)
    for b, n in enumerate(LENGTHS):  # each sequence alone, unpadded
        alone = emissions[b : b + 1, :n]
        assert crf.log_partition(alone).item() == pytest.approx(crf.log_partition(emissions, mask)[b].item())
        assert crf.viterbi(alone) == [crf.viterbi(emissions, mask)[b]]


def _legal(tags: list[str], path, scheme: str) -> bool:
    parsed = [parse_tag(tags[i], scheme) for i in path]
    steps = zip([None, *parsed], [*parsed, None], strict=True)
    return all(transition_allowed(a, b, scheme) for a, b in steps)


@pytest.mark.parametrize(("tags", "scheme"), [(BIO_TAGS, "BIO"), (BIOES_TAGS, "BIOES")])
def test_constraints_forbid_illegal_paths(tags, scheme):
    C = len(tags)
    crf = _crf(C, scheme_constraints(tags, scheme))
    torch.manual_seed(2)
    emissions = 5 * torch.randn(6, 3, C, dtype=torch.float64)
    emissions[:, 0, tags.index("I-PER")] += 50  # an entity's inside, first: illegal in both schemes
    legal_paths = [p for p in itertools.product(range(C), repeat=3) if _legal(tags, p, scheme)]
    for b, path in enumerate(crf.viterbi(emissions)):
        legal = {p: _score(crf, emissions[b], p) for p in legal_paths}
        assert path == list(max(legal, key=legal.get))
        log_z = math.log(sum(math.exp(s) for s in legal.values()))
        assert crf.log_partition(emissions[b : b + 1]).item() == pytest.approx(log_z, rel=1e-12)
    illegal = torch.tensor([[tags.index("I-PER"), 0, 0]])
    assert crf.log_likelihood(emissions[:1], illegal).exp().item() == 0.0


def test_scheme_rules():
    assert parse_tag("B-PER", "BIO") == ("B", "PER") and parse_tag("O", "BIOES") == ("O", "")
    assert (
        parse_tag("S-PER", "BIO") is None
        and parse_tag("B-", "BIO") is None
        and parse_tag("PER", "BIO") is None
    )
    bio = scheme_constraints(BIO_TAGS, "BIO")
    assert bio.start.tolist() == [True, True, False, True, False]
    assert bio.transitions[BIO_TAGS.index("B-LOC")].tolist() == [True, True, False, True, True]
    assert bio.end.all()
    bioes = scheme_constraints(BIOES_TAGS, "BIOES")
    assert bioes.end.tolist() == [True, False, False, True, True]  # an entity must be closed
    assert bioes.transitions[BIOES_TAGS.index("I-PER")].tolist() == [False, False, True, True, False]
    with pytest.raises(DataError, match=r"tags \['S-PER'\] are not BIO tags \(O, or B/I-<type>\)"):
        scheme_constraints(["O", "B-PER", "S-PER"], "BIO")


def test_shape_and_mask_errors():
    crf = CRF(3)
    with pytest.raises(ShapeError, match=r"emissions must be \(B, T, C\) with C = 3 tags"):
        crf.viterbi(torch.randn(2, 4, 5))
    with pytest.raises(ShapeError, match="True on a prefix of each row, step 0 included"):
        crf.viterbi(torch.randn(1, 3, 3), torch.tensor([[True, False, True]]))
    with pytest.raises(ShapeError, match="True on a prefix of each row"):
        crf.log_partition(torch.randn(1, 3, 3), torch.tensor([[False, True, True]]))
    with pytest.raises(ShapeError, match=r"tags must be \(B, T\) = \(1, 3\)"):
        crf.log_likelihood(torch.randn(1, 3, 3), torch.zeros(1, 2, dtype=torch.long))
