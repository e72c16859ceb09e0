"""Generation: carried state == re-reading the prefix, filters keep exactly their sets, seeds, eos, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnkit import LSTM
from rnnkit.decoding import beam_generate, generate, generate_text, sample_next, top_k_filter, top_p_filter
from rnnkit.errors import ConfigError, DataError, DTypeError, ShapeError

V = 11
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class TinyLM(nn.Module):
    """Embedding -> 2-layer LSTM -> linear: the LanguageModel protocol at its smallest."""

    def __init__(self, vocab: int = V, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.rnn = LSTM(6, hidden, num_layers=2)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state=None):
        out = self.rnn(self.embed(tokens), state)  # outputs (B, T, H)
        return self.head(out.outputs), out.state  # (B, T, V)


class Counter(nn.Module):
    """Next token = last token + 1 (mod vocab); the state (1, B, 1) counts the tokens each row has read."""

    def __init__(self, vocab: int = 8) -> None:
        super().__init__()
        self.vocab, self.calls, self.modes = vocab, [], []

    def forward(self, tokens, state=None):
        self.calls.append(tuple(tokens.shape))
        self.modes.append(self.training)
        B, T = tokens.shape
        logits = 10.0 * F.one_hot((tokens + 1) % self.vocab, self.vocab).double()  # (B, T, V)
        read = torch.full((1, B, 1), T, dtype=torch.long, device=tokens.device)
        return logits, read if state is None else state + read


class Letters:
    """A character codec over 'abcdefgh'."""

    def encode(self, text):
        return ["abcdefgh".index(c) for c in text]

    def decode(self, ids):
        return "".join("abcdefgh"[i] for i in ids)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyLM().double().eval()


def prompts(batch=3, length=5, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def reread(model, prompt, n, generator, **options):
    """The reference: every step reads the whole prefix again from the initial state."""
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(seq)  # (B, T + i, V)
            token = sample_next(logits[:, -1], generator=generator, **options)
            seq = torch.cat([seq, token[:, None]], dim=1)
    return seq[:, prompt.shape[1] :]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "options",
    [dict(greedy=True), dict(temperature=1.5), dict(temperature=0.7, top_k=4), dict(top_p=0.8)],
)
def test_carried_state_equals_rereading_the_prefix(model, device, options):
    model = model.to(device)
    prompt = prompts().to(device)
    out = generate(model, prompt, 12, seed=7, **options)
    expected = reread(model, prompt, 12, torch.Generator(device=device).manual_seed(7), **options)
    assert out.tokens.shape == (3, 12)
    assert torch.equal(out.tokens, expected)


def test_returned_state_continues_the_generation(model):
    prompt = prompts()
    whole = generate(model, prompt, 10, greedy=True)
    first = generate(model, prompt, 4, greedy=True)
    rest = generate(model, first.tokens[:, -1:], 6, greedy=True, state=first.state)
    assert torch.equal(torch.cat([first.tokens, rest.tokens], dim=1), whole.tokens)


def test_prompt_is_read_once_then_one_token_per_step_in_eval_mode():
    counter = Counter().train()
    out = generate(counter, torch.tensor([[1, 2, 3], [0, 0, 4]]), 5, greedy=True)
    assert out.tokens.tolist() == [[4, 5, 6, 7, 0], [5, 6, 7, 0, 1]]
    assert counter.calls == [(1, 1), (2, 3)] + [(2, 1)] * 4  # a probe for V, the prompt, then tokens
    assert counter.modes == [False] * 6
    assert counter.training  # the training flag comes back
    assert out.state.flatten().tolist() == [3 + 4, 3 + 4]  # every new token read but the last


def test_greedy_equals_temperature_zero_and_ignores_the_seed(model):
    prompt = prompts()
    greedy = generate(model, prompt, 15, greedy=True, seed=1).tokens
    assert torch.equal(generate(model, prompt, 15, temperature=0, seed=2).tokens, greedy)
    assert torch.equal(reread(model, prompt, 15, None, greedy=True), greedy)


def test_same_seed_same_tokens_different_seeds_different_tokens(model):
    prompt = prompts()
    a = generate(model, prompt, 30, temperature=3.0, seed=5).tokens
    assert torch.equal(generate(model, prompt, 30, temperature=3.0, seed=5).tokens, a)
    assert not torch.equal(generate(model, prompt, 30, temperature=3.0, seed=6).tokens, a)


def test_generate_never_touches_the_global_rng(model):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    generate(model, prompts(), 20, temperature=2.0, seed=3)
    generate(model, prompts(), 20, top_k=3, top_p=0.9)  # unseeded: a fresh seed from the OS
    assert torch.equal(torch.get_rng_state(), before)


def test_one_dimensional_prompt_gives_one_dimensional_tokens(model):
    prompt = prompts(batch=1)
    out = generate(model, prompt[0], 8, temperature=1.2, seed=4)
    assert out.tokens.shape == (8,)
    assert torch.equal(out.tokens, generate(model, prompt, 8, temperature=1.2, seed=4).tokens[0])
    assert generate(model, prompt[0], 0).tokens.shape == (0,)
    assert generate(model, prompt, 0).tokens.shape == (1, 0)


def test_batch_of_prompts_gives_the_rows_of_one_prompt_at_a_time(model):
    prompt = prompts(batch=4, length=6)
    batch = generate(model, prompt, 10, greedy=True).tokens
    for row in range(4):
        assert torch.equal(generate(model, prompt[row], 10, greedy=True).tokens, batch[row])


def test_eos_stops_each_row_pads_it_and_freezes_its_state():
    counter = Counter()
    out = generate(counter, torch.tensor([[1], [5], [3]]), 20, greedy=True, eos_id=7)
    assert out.tokens.tolist() == [
        [2, 3, 4, 5, 6, 7],
        [6, 7, 7, 7, 7, 7],
        [4, 5, 6, 7, 7, 7],
    ]  # stops once every row has its eos
    assert out.state.flatten().tolist() == [1 + 5, 1 + 1, 1 + 3]  # each row read up to its eos
    short = generate(counter, torch.tensor([[1], [5]]), 3, greedy=True, eos_id=7)
    assert short.tokens.tolist() == [[2, 3, 4], [6, 7, 7]]


def test_sampled_rows_match_free_generation_up_to_their_eos(model):
    prompt, eos = prompts(batch=8), 3
    free = generate(model, prompt, 25, temperature=2.0, seed=11).tokens
    out = generate(model, prompt, 25, temperature=2.0, seed=11, eos_id=eos)
    stops = [row.tolist().index(eos) + 1 if eos in row else 25 for row in free]
    assert len(set(stops)) > 2 and max(stops) < 25  # rows end at different steps, all before the limit
    assert out.tokens.shape == (8, max(stops))
    for r, stop in enumerate(stops):
        assert torch.equal(out.tokens[r, :stop], free[r, :stop])
        assert (out.tokens[r, stop:] == eos).all()
        with torch.no_grad():  # the row's state has read its prompt and new tokens up to its eos
            _, state = model(torch.cat([prompt[r], free[r, : stop - 1]])[None])
        for got, want in zip(out.state, state, strict=True):
            torch.testing.assert_close(got[:, r], want[:, 0], rtol=0, atol=1e-12)


def test_generate_text_returns_the_continuation_cut_at_eos():
    assert generate_text(Counter(), Letters(), "ab", 4, greedy=True) == "cdef"
    assert generate_text(Counter(), Letters(), "b", 20, greedy=True, eos_id=7) == "cdefg"


# --- filters and sampling ---------------------------------------------------------------------------

LOGITS = torch.tensor([[3.0, 1.0, 3.0, 2.0, 2.0, 0.0]], dtype=torch.float64)
PROBS = torch.tensor([[0.4, 0.2, 0.2, 0.1, 0.1]], dtype=torch.float64)  # ties at 0.2 and at 0.1


def kept(filtered):
    return set(torch.isfinite(filtered[0]).nonzero().flatten().tolist())


def drawn(logits, n=3000, **options):
    generator = torch.Generator().manual_seed(0)
    rows = logits.expand(n, -1)
    return set(sample_next(rows, generator=generator, **options).tolist())


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, {0}), (2, {0, 2}), (3, {0, 2, 3}), (4, {0, 2, 3, 4}), (6, set(range(6))), (9, set(range(6)))],
)
def test_top_k_keeps_exactly_the_k_largest_lower_id_on_ties(k, expected):
    assert kept(top_k_filter(LOGITS, k)) == expected
    assert drawn(LOGITS, top_k=k, temperature=4.0) == expected


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (1e-9, {0}),
        (0.4, {0}),
        (0.5, {0, 1}),
        (0.7, {0, 1, 2}),
        (0.85, {0, 1, 2, 3}),
        (0.95, set(range(5))),
        (1.0, set(range(5))),
    ],
)
def test_top_p_keeps_exactly_the_nucleus(p, expected):
    logits = PROBS.log()
    assert kept(top_p_filter(logits, p)) == expected
    assert drawn(logits, top_p=p) == expected


def test_top_k_applies_before_top_p():
    # top-k 2 leaves {0, 1} with 2/3 and 1/3, so a nucleus of 0.6 is {0}; the other order gives {0, 1}
    assert drawn(PROBS.log(), top_k=2, top_p=0.6) == {0}
    assert kept(top_k_filter(top_p_filter(PROBS.log(), 0.6), 2)) == {0, 1}


def reference_top_k(logits, k):
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    return set(order[:k])


def reference_top_p(logits, p):
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0).tolist()
    total, nucleus = 0.0, set()
    for i in sorted(range(len(probs)), key=lambda i: (-probs[i], i)):
        if total >= p:
            break
        nucleus.add(i)
        total += probs[i]
    return nucleus


grid_logits = st.lists(st.integers(-4, 4).map(float), min_size=1, max_size=9)  # small grid: many ties


@settings(max_examples=200, deadline=None)
@given(grid_logits, st.integers(1, 12))
def test_top_k_filter_matches_the_reference(logits, k):
    row = torch.tensor([logits], dtype=torch.float64)
    filtered = top_k_filter(row, k)
    assert kept(filtered) == reference_top_k(logits, k)
    assert torch.equal(filtered[torch.isfinite(filtered)], row[torch.isfinite(filtered)])


@settings(max_examples=200, deadline=None)
@given(grid_logits, st.floats(0.0, 1.0, exclude_min=True))
def test_top_p_filter_matches_the_reference(logits, p):
    row = torch.tensor([logits], dtype=torch.float64)
    filtered = top_p_filter(row, p)
    assert kept(filtered) == reference_top_p(logits, p)
    assert filtered[0, max(range(len(logits)), key=lambda i: (logits[i], -i))] == max(logits)


def test_ties_go_to_the_lower_id_in_long_rows():
    logits = torch.randint(0, 3, (1, 5000), generator=torch.Generator().manual_seed(0)).double()
    twos = (logits[0] == 2).nonzero().flatten().tolist()
    assert kept(top_k_filter(logits, 100)) == set(twos[:100])
    probs = torch.softmax(logits[0], dim=0)
    p = float(probs[twos[0]] * 99.5)  # the nucleus takes 100 of the equal most likely tokens
    assert kept(top_p_filter(logits, p)) == set(twos[:100])


def test_top_p_of_one_keeps_tokens_that_rounding_would_drop():
    logits = torch.tensor([[0.0, -40.0, -45.0]], dtype=torch.float64)  # probabilities 1 - 4e-18, ...
    assert kept(top_p_filter(logits, 1.0)) == {0, 1, 2}
    assert kept(top_p_filter(logits, 0.999)) == {0}


def test_filters_work_row_by_row():
    rows = torch.tensor([[0.0, 5.0, 1.0], [2.0, 1.0, 9.0]])
    assert torch.isfinite(top_k_filter(rows, 1)).tolist() == [[False, True, False], [False, False, True]]
    assert torch.isfinite(top_p_filter(rows, 0.5)).tolist() == [[False, True, False], [False, False, True]]


def test_half_precision_logits_sample_in_float32():
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float16)
    assert drawn(logits, n=4000, temperature=1.0) == {0, 1}


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(max_tokens=-1), r"max_tokens must be an integer >= 0, got -1"),
        (dict(max_tokens=2.5), r"max_tokens must be an integer >= 0, got 2.5"),
        (dict(temperature=-0.5), r"temperature must be a finite number >= 0 \(0 means greedy\), got -0.5"),
        (dict(temperature=float("nan")), r"temperature must be a finite number >= 0 .*got nan"),
        (dict(top_k=0), r"top_k must be an integer >= 1, got 0: use None to keep every token"),
        (dict(top_p=0.0), r"top_p must lie in \(0, 1\], got 0.0: use 1 or None"),
        (dict(top_p=1.5), r"top_p must lie in \(0, 1\], got 1.5"),
        (dict(eos_id=V), rf"eos_id must be a token id in \[0, {V}\), got {V}"),
    ],
)
def test_bad_options_are_config_errors(model, options, message):
    options = {"max_tokens": 3, **options}
    with pytest.raises(ConfigError, match=message):
        generate(model, prompts(), **options)


@pytest.mark.parametrize(
    ("prompt", "error", "message"),
    [
        (
            torch.tensor([], dtype=torch.long),
            DataError,
            r"prompt is empty \(shape \(0,\)\); give at least one",
        ),
        (torch.zeros(2, 0, dtype=torch.long), DataError, r"prompt is empty \(shape \(2, 0\)\)"),
        (torch.tensor([1, V, 2]), DataError, rf"prompt id {V} lies outside the model's vocabulary of {V}"),
        (torch.tensor([1, -1]), DataError, r"prompt ids must be >= 0, got -1: encode the text"),
        (
            torch.tensor([1.0, 2.0]),
            DTypeError,
            r"prompt must hold integer token ids, got dtype torch.float32",
        ),
        ([1, 2], DTypeError, r"prompt must be a tensor of token ids, got list"),
        (torch.zeros(1, 2, 3, dtype=torch.long), ShapeError, r"prompt must be \(T,\) or \(B, T\); got"),
    ],
)
def test_bad_prompts_name_the_value_and_the_fix(model, prompt, error, message):
    with pytest.raises(error, match=message):
        generate(model, prompt, 3)


def test_empty_text_prompt_is_a_data_error():
    with pytest.raises(DataError, match=r"the prompt '' encodes to no tokens"):
        generate_text(Counter(), Letters(), "", 3)


def test_sample_next_wants_two_dimensional_logits():
    with pytest.raises(ShapeError, match=r"logits must be \(B, V\); got shape \(1, 2, 3\)"):
        sample_next(torch.zeros(1, 2, 3))
    with pytest.raises(ConfigError, match=r"top_k must be an integer >= 1, got -2"):
        top_k_filter(torch.zeros(1, 3), -2)


class BatchFirstState(Counter):
    def forward(self, tokens, state=None):
        logits, read = super().forward(tokens, state)
        return logits, read[0]  # (B, 1): the batch along dim 0, against the protocol


class FlatLogits(Counter):
    def forward(self, tokens, state=None):
        logits, read = super().forward(tokens, state)
        return logits[:, -1], read  # (B, V) instead of (B, T, V)


def test_models_breaking_the_protocol_get_shape_errors():
    with pytest.raises(ShapeError, match=r"batch \(2\) along dim 1, as \(L, B, H\); .* shape \(2, 1\)"):
        generate(BatchFirstState(), torch.tensor([[1], [5]]), 5, greedy=True, eos_id=7)
    with pytest.raises(ShapeError, match=r"must return logits \(1, 1, V\) first; got \(1, 8\)"):
        generate(FlatLogits(), torch.tensor([1]), 5)


# --- beam search over continuations ------------------------------------------------------------------


def rescored(model, prompt, tokens, eos_id=None, banned=()):
    """The log-probability of ``tokens`` (and eos) after ``prompt`` (T,), re-reading every prefix."""
    total, seq = 0.0, prompt
    for token in [*tokens, *([] if eos_id is None else [eos_id])]:
        with torch.no_grad():
            logits = model(seq[None])[0][0, -1].index_fill(
                0, torch.tensor(list(banned), dtype=torch.long), -math.inf
            )
        total += float(torch.log_softmax(logits, -1)[token])
        seq = torch.cat([seq, torch.tensor([token])])
    return total


@pytest.mark.parametrize("options", [{}, dict(eos_id=3, banned=(0, 1)), dict(banned=(5,))])
def test_beam_of_width_one_is_greedy_generation(model, options):
    prompt = prompts()
    greedy = generate(model, prompt, 12, greedy=True, **options).tokens
    for length_penalty in (0.0, 1.0):
        found = beam_generate(model, prompt, 12, beam_width=1, length_penalty=length_penalty, **options)
        for row, hypotheses in zip(greedy.tolist(), found, strict=True):
            eos = options.get("eos_id")
            assert hypotheses[0].tokens == (row[: row.index(eos)] if eos in row else row)


def test_beams_come_best_first_distinct_scored_as_rereading_with_banned_ids_never_chosen(model):
    prompt, banned = prompts(batch=2), (0, 1, 2)
    found = beam_generate(model, prompt, 6, beam_width=4, n_best=4, eos_id=3, banned=banned)
    for row, hypotheses in zip(prompt, found, strict=True):
        assert [h.normalized for h in hypotheses] == sorted((h.normalized for h in hypotheses), reverse=True)
        assert len({tuple(h.tokens) for h in hypotheses}) == 4
        for h in hypotheses:
            assert not set(h.tokens) & set(banned) and h.attention is None
            eos = 3 if len(h.tokens) < 6 else None
            assert h.score == pytest.approx(rescored(model, row, h.tokens, eos, banned), abs=1e-9)


def test_beam_over_a_batch_of_prompts_gives_each_prompt_alone(model):
    prompt = prompts(batch=3, length=4)
    together = beam_generate(model, prompt, 8, beam_width=3, n_best=2, eos_id=5)
    for row in range(3):
        alone = beam_generate(model, prompt[row], 8, beam_width=3, n_best=2, eos_id=5)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[row]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[row]], abs=1e-9)


def test_beam_reads_the_prompt_once_carries_the_state_and_stops_at_eos():
    prompt = torch.tensor([[1, 2], [4, 4]])
    found = beam_generate(Counter(), prompt, 20, beam_width=2, eos_id=7)
    assert [h[0].tokens for h in found] == [[3, 4, 5, 6], [5, 6]]
    counter = Counter()
    beam_generate(counter, prompt, 20, beam_width=1, eos_id=7)
    # a probe for V, the prompt but its last token, then a step per token: 5 to the first row's eos
    assert counter.calls == [(1, 1), (2, 1)] + [(2, 1)] * 5


def test_beam_continues_from_a_given_state(model):
    prompt = prompts(batch=2, length=6)
    with torch.no_grad():
        _, state = model(prompt[:, :4])
    carried = beam_generate(model, prompt[:, 4:], 7, beam_width=3, state=state)
    whole = beam_generate(model, prompt, 7, beam_width=3)
    assert [h[0].tokens for h in carried] == [h[0].tokens for h in whole]


def test_generate_text_by_beam_search_and_its_errors():
    assert generate_text(Counter(), Letters(), "b", 20, beam_width=3, eos_id=7) == "cdefg"
    with pytest.raises(ConfigError, match=r"beam search \(beam_width=3\) samples nothing: drop top_k, seed"):
        generate_text(Counter(), Letters(), "b", 5, beam_width=3, top_k=2, seed=0)
    with pytest.raises(ConfigError, match=r"max_tokens must be an integer >= 1 for beam search, got 0"):
        beam_generate(Counter(), torch.tensor([1]), 0)
    with pytest.raises(ConfigError, match=r"n_best must be an integer in \[1, beam_width=2\], got 3"):
        beam_generate(Counter(), torch.tensor([1]), 4, beam_width=2, n_best=3)


class DictState(Counter):
    def forward(self, tokens, state=None):
        logits, read = super().forward(tokens, None if state is None else state["read"])
        return logits, {"read": read}


def test_beam_refuses_states_it_cannot_reorder():
    with pytest.raises(ShapeError, match=r"batch \(2\) along dim 1, as \(L, B, H\); .* shape \(2, 1\)"):
        beam_generate(BatchFirstState(), torch.tensor([[1, 2], [5, 6]]), 5, beam_width=2)
    with pytest.raises(
        ShapeError, match=r"tensors \(L, B, H\), \(named\) tuples or lists of them, or None; .*dict"
    ):
        beam_generate(DictState(), torch.tensor([[1, 2]]), 5, beam_width=2)
