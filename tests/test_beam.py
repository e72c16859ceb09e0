"""Greedy and beam search: width 1 is greedy, order, eos, n-best, batch independence, exactness, the
stopping rule."""

import itertools
import math
from typing import NamedTuple

import pytest
import torch

from rnnkit.decoding import Hypothesis, beam_search, greedy_search
from rnnkit.errors import ConfigError
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig

BOS, EOS = 2, 3


def make(V=8, **options) -> Seq2Seq:
    torch.manual_seed(0)
    defaults = {"source_vocab_size": 9, "target_vocab_size": V, "embedding_dim": 5, "hidden_size": 6}
    model = Seq2Seq(Seq2SeqConfig(**{**defaults, **options}))
    with torch.no_grad():  # peaky and varied: outputs of many lengths, some cut at max_len
        torch.nn.init.normal_(model.output.weight, std=2.0)
        model.output.bias[EOS] = 0.0
    return model


def sources():
    source = torch.randint(4, 9, (3, 5), generator=torch.Generator().manual_seed(1))
    return source, torch.tensor([5, 2, 3])


# ---------------------------------------------------------------- a rigged model


class Step(NamedTuple):
    t: torch.Tensor  # (B,) steps taken

    def select(self, index):
        return Step(self.t.index_select(0, index))


class Memory(NamedTuple):
    state: Step

    def select(self, index):
        return Memory(self.state.select(index))


class Config(NamedTuple):
    bos_id: int = BOS
    eos_id: int = EOS


class Rigged(torch.nn.Module):
    """Step t's log-probabilities are table[t] whatever came before: eos is most likely at step 2."""

    config = Config()

    def __init__(self):
        super().__init__()
        self.table = torch.log_softmax(
            torch.tensor([[0, 0, 0, -3.0, 2, 1], [0, 0, 0, -2.0, 1, 2.5], [0, 0, 0, 4.0, 1, 0]]), -1
        )

    def encode(self, source, lengths=None):
        return Memory(Step(torch.zeros(source.shape[0], dtype=torch.long)))

    def decode_step(self, tokens, state, memory):
        return self.table[state.t.clamp(max=2)], Step(state.t + 1), None


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_decoding_stops_at_eos(search):
    hypotheses = search(Rigged(), torch.ones(2, 4, dtype=torch.long))
    assert [h[0].tokens for h in hypotheses] == [[4, 5], [4, 5]]
    table = Rigged().table
    assert hypotheses[0][0].score == pytest.approx(float(table[0, 4] + table[1, 5] + table[2, EOS]))


def test_beam_keeps_finished_hypotheses_aside_and_ranks_them():
    hypotheses = beam_search(
        Rigged(), torch.ones(1, 4, dtype=torch.long), beam_width=3, n_best=3, length_penalty=0
    )
    best = hypotheses[0]
    assert [h.tokens for h in best] == [[4, 5], [5, 5], [4, 4]]
    assert all(h.attention is None for h in best)


# ---------------------------------------------------------------- a real model


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize(
    "options", [{}, {"attention": "none", "cell": "gru"}, {"bidirectional": True, "num_layers": 2}]
)
def test_beam_width_one_is_greedy(options, length_penalty):
    model = make(**options)
    source, lengths = sources()
    greedy = greedy_search(model, source, lengths)
    beam = beam_search(model, source, lengths, beam_width=1, length_penalty=length_penalty)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)


def test_hypotheses_come_in_score_order_distinct_with_attention_rows_per_token():
    model = make()
    source, lengths = sources()
    for length_penalty in (0.0, 1.0):
        for b, hypotheses in enumerate(
            beam_search(model, source, lengths, beam_width=4, n_best=4, length_penalty=length_penalty)
        ):
            assert len(hypotheses) == 4
            normalized = [h.normalized for h in hypotheses]
            assert normalized == sorted(normalized, reverse=True)
            assert len({tuple(h.tokens) for h in hypotheses}) == 4
            for h in hypotheses:
                n = len(h.tokens) + (len(h.tokens) < 2 * int(lengths[b]) + 10)  # eos counts when reached
                assert h.normalized == pytest.approx(h.score / n**length_penalty)
                assert h.attention.shape == (len(h.tokens), 5)
                assert torch.all(h.attention[:, int(lengths[b]) :] == 0)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_a_batch_gives_each_example_alone(search):
    model = make()
    source, lengths = sources()
    together = search(model, source, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = search(model, source[b : b + 1, :n])[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[b]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[b]], abs=1e-5)


def test_beam_search_finds_the_best_sequences_of_brute_force_enumeration():
    model = make(V=6).eval()
    source = torch.tensor([[4, 7, 5]])
    with torch.no_grad():
        memory = model.encode(source)
    scores = {}  # every output of at most 3 tokens (eos included) -> its log-probability
    for length in (1, 2, 3):
        for tokens in itertools.product([0, 1, 2, 4, 5], repeat=length - 1):
            for last in range(6):
                if last != EOS and length < 3:
                    continue  # an output shorter than max_len goes on unless it ends
                state, token, total = memory.state, torch.tensor([BOS]), 0.0
                for next_token in [*tokens, last]:
                    with torch.no_grad():
                        logits, state, _ = model.decode_step(token, state, memory)
                    total += float(torch.log_softmax(logits, -1)[0, next_token])
                    token = torch.tensor([next_token])
                scores[tokens if last == EOS else (*tokens, last)] = total
    expected = sorted(scores.items(), key=lambda item: -item[1])[:25]
    found = beam_search(
        model, source, beam_width=25, max_len=3, length_penalty=0, n_best=25, exhaustive=True
    )[0]
    assert [tuple(h.tokens) for h in found] == [tokens for tokens, _ in expected]
    assert [h.score for h in found] == pytest.approx([score for _, score in expected], abs=1e-5)


class Counted(Rigged):
    """Rigged, counting the decoder steps."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def decode_step(self, tokens, state, memory):
        self.steps += 1
        return super().decode_step(tokens, state, memory)


def test_an_example_stops_once_beam_width_finished_and_no_open_beam_scores_better_now():
    early, exhaustive = Counted(), Counted()
    source = torch.ones(1, 4, dtype=torch.long)
    found = beam_search(early, source, beam_width=2, n_best=2)[0]
    assert early.steps == 3  # eos tops both beams at step 3: two finished, the open ones worse
    assert [h.tokens for h in found] == [[4, 5], [5, 5]]
    assert beam_search(exhaustive, source, beam_width=2, n_best=2, exhaustive=True)[0] == found
    assert exhaustive.steps > 3  # the open beams' bound over max_len=18 still beat the finished ones


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_the_exhaustive_rule_finds_hypotheses_at_least_as_good(length_penalty):
    model = make()
    source, lengths = sources()
    options = dict(beam_width=3, n_best=2, length_penalty=length_penalty)
    early = beam_search(model, source, lengths, **options)
    exact = beam_search(model, source, lengths, exhaustive=True, **options)
    for e, x in zip(early, exact, strict=True):
        assert all(a.normalized <= b.normalized + 1e-6 for a, b in zip(e, x, strict=True))


def test_search_restores_the_mode_and_keeps_no_graph():
    model = make().train()
    source, lengths = sources()
    hypotheses = beam_search(model, source, lengths, beam_width=2)
    assert model.training and isinstance(hypotheses[0][0], Hypothesis)
    assert not hypotheses[0][0].attention.requires_grad
    greedy_search(model, source, lengths, max_len=2)
    assert model.training


def test_max_len_caps_the_output():
    model = make()
    source, lengths = sources()
    for search in (greedy_search, beam_search):
        assert all(len(h[0].tokens) <= 2 for h in search(model, source, lengths, max_len=2))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"beam_width": 0}, "beam_width must be an integer >= 1, got 0"),
        (
            {"n_best": 3, "beam_width": 2},
            r"n_best must be an integer in \[1, beam_width=2\], got 3: .* widen",
        ),
        ({"length_penalty": -1.0}, "length_penalty must be a number >= 0"),
        ({"max_len": 0}, "max_len must be an integer >= 1, or None"),
    ],
)
def test_bad_options_are_refused(options, message):
    model = make()
    with pytest.raises(ConfigError, match=message):
        beam_search(model, *sources(), **options)
    if set(options) == {"max_len"}:
        with pytest.raises(ConfigError, match=message):
            greedy_search(model, *sources(), **options)


def test_the_scores_are_log_probabilities():
    hypotheses = beam_search(
        Rigged(), torch.ones(1, 4, dtype=torch.long), beam_width=6, n_best=6, length_penalty=0
    )
    assert all(h.score <= 0 and math.isfinite(h.score) for h in hypotheses[0])
