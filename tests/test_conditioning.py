"""A language model conditioned on a feature vector or a class: unchanged without the keys, the
condition changes the output, travels in the state through sampling and beam search (each beam keeps
its row's condition), gets gradients, and malformed conditions are refused with clear errors."""

import pytest
import torch

import rnnkit
from rnnkit.bundle import load_bundle, save_bundle
from rnnkit.cells import LSTMState
from rnnkit.config import validate
from rnnkit.data.vocab import TextCodec
from rnnkit.decoding import beam_generate, generate
from rnnkit.decoding.search import _state_rows
from rnnkit.errors import ConfigError, DataError, DTypeError, ShapeError
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.models.conditioning import ConditionedState
from rnnkit.tasks import get_task

V, C = 13, 5
SMALL = {"vocab_size": V, "embedding_dim": 6, "hidden_size": 8, "num_layers": 2}


def make(**options) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(**{**SMALL, **options})).eval()


def tokens(B=2, T=5, seed=1) -> torch.Tensor:
    return torch.randint(4, V, (B, T), generator=torch.Generator().manual_seed(seed))


def features(B=2, seed=2) -> torch.Tensor:
    return torch.randn(B, C, generator=torch.Generator().manual_seed(seed)) * 3


def sharpen(model: LanguageModel) -> LanguageModel:
    """Larger start weights, so a random model's greedy text depends visibly on the condition."""
    with torch.no_grad():
        model.conditioning.start_projection.weight.mul_(8)
    return model


# ---------------------------------------------------------------- without the keys, nothing changes


def test_a_model_without_condition_keys_is_built_dumped_and_run_as_before():
    plain = make()
    explicit = make(condition_size=None, num_conditions=None, condition_inputs=False)
    assert plain.conditioning is None and "conditioning" not in str(list(plain.state_dict()))
    assert list(plain.state_dict()) == list(explicit.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), explicit.state_dict().values(), strict=True)
    )
    assert not set(plain.config.model_dump()) & {"condition_size", "num_conditions", "condition_inputs"}
    logits, state = plain(tokens())
    assert isinstance(state, LSTMState) and torch.equal(logits, explicit(tokens())[0])


def test_conditioning_is_built_last_so_the_other_weights_draw_as_before():
    plain, conditioned = make().state_dict(), make(condition_size=C).state_dict()
    assert [k for k in conditioned if not k.startswith("conditioning.")] == list(plain)
    assert all(torch.equal(plain[k], conditioned[k]) for k in plain)


def test_a_conditioned_config_round_trips_and_its_bundle_loads(tmp_path):
    model = make(num_conditions=3, condition_inputs=True)
    dumped = model.config.model_dump(mode="json")
    assert (
        dumped["num_conditions"] == 3
        and dumped["condition_inputs"] is True
        and "condition_size" not in dumped
    )
    assert validate(LanguageModelConfig, dumped) == model.config
    save_bundle(tmp_path / "lm", model, {"model": dumped})
    loaded = load_bundle(tmp_path / "lm").model
    condition = torch.tensor([2, 0])
    assert torch.equal(loaded(tokens(), condition=condition)[0], model(tokens(), condition=condition)[0])


# ---------------------------------------------------------------- the condition changes the output


@pytest.mark.parametrize("options", [{"condition_size": C}, {"num_conditions": 4, "condition_inputs": True}])
def test_different_conditions_give_different_logits_and_texts(options):
    model = sharpen(make(**options))
    a, b = (
        (features(1, 2), features(1, 3))
        if "condition_size" in options
        else (torch.tensor([0]), torch.tensor([3]))
    )
    x = tokens(1)
    assert not torch.allclose(model(x, condition=a)[0], model(x, condition=b)[0])
    texts = [generate(model, x[0, :1], 12, greedy=True, condition=c).tokens.tolist() for c in (a, b)]
    assert texts[0] != texts[1]


def test_the_state_carries_the_condition_so_reading_on_equals_reading_at_once():
    model = make(condition_size=C, condition_inputs=True)
    x = tokens(T=8)
    whole, _ = model(x, condition=features())
    first, state = model(x[:, :3], condition=features())
    assert isinstance(state, ConditionedState) and torch.equal(state.condition[0], features())
    rest, _ = model(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)
    assert torch.equal(model(x, state=model.start(features()))[0], whole)


def test_inputs_conditioning_reaches_every_step():
    """With condition_inputs the condition acts after the start too: change it mid-sequence and the
    next logits change, while the layers' state stays the same."""
    model = make(condition_size=C, condition_inputs=True)
    _, state = model(tokens(T=3), condition=features())
    swapped = ConditionedState(state.layers, features(seed=9).unsqueeze(0))
    assert not torch.allclose(model(tokens(T=1), state)[0], model(tokens(T=1), swapped)[0])
    no_inputs = make(condition_size=C)
    _, state = no_inputs(tokens(T=3), condition=features())
    swapped = ConditionedState(state.layers, features(seed=9).unsqueeze(0))
    assert torch.equal(no_inputs(tokens(T=1), state)[0], no_inputs(tokens(T=1), swapped)[0])


def test_the_gradient_reaches_the_condition_projections_and_the_condition():
    model = make(condition_size=C, condition_inputs=True).train()
    condition = features().requires_grad_()
    loss, _ = model.loss(tokens()[:, :-1], tokens()[:, 1:], condition=condition)
    loss.backward()
    for projection in (model.conditioning.start_projection, model.conditioning.input_projection):
        assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0
    assert condition.grad is not None and condition.grad.abs().sum() > 0


# ---------------------------------------------------------------- decoding carries it


@pytest.mark.parametrize("options", [{"condition_size": C, "condition_inputs": True}, {"num_conditions": 4}])
def test_beam_search_gives_each_row_what_it_gives_alone(options):
    model = sharpen(make(**options))
    both = features() if "condition_size" in options else torch.tensor([1, 3])
    prompt = tokens(2, 2)
    together = beam_generate(model, prompt, 8, beam_width=3, n_best=3, condition=both)
    for b in range(2):
        alone = beam_generate(model, prompt[b], 8, beam_width=3, n_best=3, condition=both[b : b + 1])
        assert [h.tokens for h in together[b]] == [h.tokens for h in alone[0]]
        torch.testing.assert_close([h.score for h in together[b]], [h.score for h in alone[0]])
    assert [h.tokens for h in together[0]] != [h.tokens for h in together[1]]


def test_selecting_beam_rows_moves_each_rows_condition_with_its_state():
    model = make(condition_size=C, cell="gru")
    _, state = model(tokens(3, 2), condition=features(3))
    rows = torch.tensor([2, 0, 2, 1])
    picked = _state_rows(state, rows, 3)
    assert isinstance(picked, ConditionedState)
    assert torch.equal(picked.condition[0], features(3)[rows])
    assert torch.equal(picked.layers.h, state.layers.h[:, rows])


def test_beam_width_one_is_greedy_generate_with_a_condition():
    model = sharpen(make(num_conditions=4, condition_inputs=True))
    condition = torch.tensor([0, 2, 3])
    prompt = tokens(3, 2)
    greedy = generate(model, prompt, 10, greedy=True, condition=condition).tokens.tolist()
    beam = beam_generate(model, prompt, 10, beam_width=1, condition=condition)
    assert [row[0].tokens for row in beam] == greedy


def test_sampling_with_a_seed_repeats_and_finished_rows_keep_their_condition():
    model = sharpen(make(condition_size=C, condition_inputs=True))
    out = generate(model, tokens(2, 2), 15, seed=3, eos_id=5, condition=features())
    again = generate(model, tokens(2, 2), 15, seed=3, eos_id=5, condition=features())
    assert torch.equal(out.tokens, again.tokens)
    assert torch.equal(out.state.condition[0], features())


# ---------------------------------------------------------------- malformed conditions


@pytest.mark.parametrize(
    ("options", "condition", "error", "message"),
    [
        (
            {"condition_size": C},
            torch.zeros(2, 4),
            ShapeError,
            r"condition must be \(B, 5\) features.*got shape \(2, 4\)",
        ),
        ({"condition_size": C}, torch.zeros(C), ShapeError, r"got shape \(5,\) \(add the batch dimension"),
        (
            {"condition_size": C},
            torch.full((2, C), float("nan")),
            DataError,
            "condition holds NaN or infinity",
        ),
        (
            {"condition_size": C},
            torch.zeros(2, C, dtype=torch.long),
            DTypeError,
            "condition must be float features",
        ),
        ({"condition_size": C}, [[0.0] * C] * 2, ShapeError, "condition must be a torch.Tensor"),
        ({"num_conditions": 3}, torch.tensor([0, 3]), DataError, r"class ids must lie in \[0, 3\).*max 3"),
        ({"num_conditions": 3}, torch.tensor([-1, 0]), DataError, r"class ids must lie in \[0, 3\).*min -1"),
        ({"num_conditions": 3}, torch.tensor([0.0, 1.0]), DTypeError, "condition must be integer class ids"),
        ({"num_conditions": 3}, torch.tensor([[0], [1]]), ShapeError, r"\(B,\) class ids in \[0, 3\)"),
        ({"num_conditions": 3}, None, ConfigError, "is conditioned .* and got none: pass condition="),
        ({}, torch.tensor([0, 1]), ConfigError, "has no condition .*: drop the condition"),
    ],
)
def test_a_malformed_condition_is_refused(options, condition, error, message):
    with pytest.raises(error, match=message):
        make(**options)(tokens(), condition=condition)


def test_a_condition_for_the_wrong_number_of_rows_is_refused():
    with pytest.raises(ShapeError, match=r"conditions of shape \(1, 3, 5\), expected \(1, B, C\) with B = 2"):
        make(condition_size=C)(tokens(2), condition=features(3))


def test_states_of_the_wrong_kind_and_both_start_kinds_are_refused():
    conditioned, plain = make(condition_size=C), make()
    with pytest.raises(ConfigError, match="and got a plain LSTMState"):
        conditioned(tokens(), plain(tokens())[1])
    with pytest.raises(ConfigError, match="the state given carries one"):
        plain(tokens(), conditioned(tokens(), condition=features())[1])
    with pytest.raises(ConfigError, match="not both"):
        conditioned(tokens(), conditioned.start(features()), condition=features())
    with pytest.raises(ConfigError, match="not both"):
        generate(conditioned, tokens(), 3, state=conditioned.start(features()), condition=features())
    with pytest.raises(ConfigError, match="Linear takes no condition"):
        generate(torch.nn.Linear(2, 2), tokens(), 3, condition=features())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"condition_size": 4, "num_conditions": 3}, "two kinds of condition: set one of them"),
        ({"condition_inputs": True}, "condition_inputs feeds the condition .* there is none"),
        ({"condition_size": 0}, "condition_size: Input should be greater than 0"),
    ],
)
def test_condition_keys_that_cannot_work_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(LanguageModelConfig, {**SMALL, **options}, source="model")


def test_the_language_model_task_refuses_condition_keys_its_corpus_cannot_fill():
    with pytest.raises(
        ConfigError, match=r"model\.num_conditions: the language_model task trains on a plain corpus"
    ):
        get_task("language_model").check_model({"num_conditions": 3}, None)


# ---------------------------------------------------------------- the language model's predictor


def test_the_predictor_generates_from_a_class_condition(tmp_path):
    codec = TextCodec.fit(["the cat sat on the mat."], level="char")
    model = sharpen(make(vocab_size=len(codec.vocab), num_conditions=3))
    config = {"task": "language_model", "data": {"path": "corpus.txt"}, "model": model.config.model_dump()}
    save_bundle(tmp_path / "lm", model, config, {"codec": codec.state_dict()})
    predictor = rnnkit.load(tmp_path / "lm")
    texts = {c: predictor.generate("the", 12, greedy=True, condition=c) for c in range(3)}
    assert len(set(texts.values())) > 1 and all(t.startswith("the") for t in texts.values())
    assert predictor.generate("the", 12, beam_width=1, condition=1) == texts[1]
    with pytest.raises(
        ConfigError, match=r"this language model is conditioned: give condition=\.\.\., a class id"
    ):
        predictor.generate("the", 5)
    with pytest.raises(ConfigError, match=r"condition must be a class id, an integer in \[0, 3\); got 'a'"):
        predictor.generate("the", 5, condition="a")
    with pytest.raises(DataError, match=r"class ids must lie in \[0, 3\)"):
        predictor.generate("the", 5, condition=7)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_conditions": 3},
        {"num_conditions": 3, "condition_inputs": True},
        {"cell": "gru", "num_layers": 1},
    ],
)
def test_a_session_read_through_the_streamers_equals_one_read_by_the_model(tmp_path, options):
    codec = TextCodec.fit(["the cat sat on the mat."], level="char")
    model = make(vocab_size=len(codec.vocab), **options)
    config = {"task": "language_model", "data": {"path": "corpus.txt"}, "model": model.config.model_dump()}
    save_bundle(tmp_path / "lm", model, config, {"codec": codec.state_dict()})
    predictor = rnnkit.load(tmp_path / "lm")
    condition = 2 if "num_conditions" in options else None
    stepped, forwarded = predictor.session(condition=condition), predictor.session(condition=condition)
    forwarded.STEP_TOKENS = 0  # every piece through the model's forward pass
    assert stepped.streamers is not None
    pieces = ("the c", "at s", "at on the mat. " * 3, "the")  # the long one goes through the model
    for piece in pieces:
        a, b = stepped.feed(piece, top=4), forwarded.feed(piece, top=4)
        assert [n["token"] for n in a["next"]] == [n["token"] for n in b["next"]]
        for x, y in zip(a["next"], b["next"], strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)
    whole = predictor.session(condition=condition).feed("".join(pieces), top=4)
    assert whole["tokens_read"] == a["tokens_read"]
    assert [n["token"] for n in whole["next"]] == [n["token"] for n in a["next"]]
