"""LanguageModel: tied weights, AWD regularisers in train and eval, carried state, padding, learning."""

import math

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.bundle import load_bundle, save_bundle
from rnnkit.cells import LSTMState, RNNState
from rnnkit.config import validate
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.layers.regularization import EmbeddingDropout, LockedDropout, weight_dropped
from rnnkit.models import LanguageModel, LanguageModelConfig, build_model

V = 11
RATES = ["embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_drop"]


def make(**options) -> LanguageModel:
    torch.manual_seed(0)
    defaults = {"vocab_size": V, "embedding_dim": 6, "hidden_size": 8, "num_layers": 2}
    return LanguageModel(LanguageModelConfig(**{**defaults, **options}))


def tokens(B=3, T=7, seed=1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- tied weights


def test_tied_weights_are_one_tensor_and_stay_tied_through_a_state_dict():
    model = make(tie_weights=True)
    assert model.decoder.weight is model.embedding.weight
    assert model.projection is not None  # hidden 8 != embedding 6: projected to 6 first
    other = make(tie_weights=True)
    with torch.no_grad():
        other.embedding.weight.normal_()
    other.load_state_dict(model.state_dict())
    assert other.decoder.weight.data_ptr() == other.embedding.weight.data_ptr()
    torch.testing.assert_close(other(tokens())[0], model(tokens())[0])
    with torch.no_grad():
        other.embedding.weight[3] += 1.0  # changing the input embedding changes the output one
    assert torch.equal(other.decoder.weight[3], other.embedding.weight[3])


def test_tied_weights_survive_a_bundle(tmp_path):
    model = make(tie_weights=True).eval()
    save_bundle(tmp_path / "lm", model, {"model": model.config.model_dump(mode="json")})
    loaded = load_bundle(tmp_path / "lm").model
    assert loaded.decoder.weight is loaded.embedding.weight
    assert torch.equal(loaded(tokens())[0], model(tokens())[0])


def test_tied_gradient_sums_both_uses_and_untied_models_have_two_matrices():
    model = make(tie_weights=True, embedding_dim=8)
    assert model.projection is None  # sizes agree: nothing between the top layer and the decoder
    model.loss(tokens()[:, :-1], tokens()[:, 1:])[0].backward()
    assert model.decoder.weight.grad is model.embedding.weight.grad
    untied = make(tie_weights=False)
    assert untied.decoder.weight.shape == (V, 8) and untied.projection is None
    assert untied.decoder.weight.data_ptr() != untied.embedding.weight.data_ptr()


# ---------------------------------------------------------------- regularisers


@pytest.mark.parametrize("rate", RATES)
def test_each_regulariser_acts_in_training_and_is_off_in_eval(rate):
    x = tokens()
    model = make(**{rate: 0.5})
    plain = make()  # same seed: the same weights, every rate 0
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    torch.testing.assert_close(model(x)[0], plain.eval()(x)[0], rtol=0, atol=0)


def test_training_is_deterministic_when_every_rate_is_zero():
    model = make().train()
    assert torch.equal(model(tokens())[0], model(tokens())[0])


def test_locked_dropout_mask_is_the_same_at_every_step():
    torch.manual_seed(0)
    out = LockedDropout(0.5).train()(torch.ones(4, 9, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every step equals step 0
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert not torch.equal(out[0], out[1])  # one mask per sequence
    assert torch.equal(LockedDropout(0.5).eval()(torch.ones(4, 9, 16)), torch.ones(4, 9, 16))


def test_embedding_dropout_drops_every_occurrence_of_a_word():
    torch.manual_seed(0)
    ids = torch.randint(0, 5, (6, 20))
    out = EmbeddingDropout(5, 0.5).train()(torch.ones(6, 20, 3), ids)
    for word in range(5):
        rows = out[ids == word]  # (n, 3): every occurrence of the word in the batch
        assert rows.eq(rows[0]).all()  # the same whole-vector fate everywhere
        assert rows[0].unique().numel() == 1 and rows[0, 0].item() in (0.0, 2.0)


def test_weight_drop_gradient_reaches_the_raw_weight_through_a_mask():
    model = make(weight_drop=0.5, num_layers=1).train()
    raw = model.layers[0].weight_hh_l0
    before = raw.detach().clone()
    model.loss(tokens()[:, :-1], tokens()[:, 1:])[0].backward()
    assert torch.equal(raw, before)  # the parameter itself is never overwritten
    zero = raw.grad.eq(0).float().mean().item()
    assert 0.35 < zero < 0.65  # about p of the 4H x H entries were dropped and got no gradient
    assert raw.grad.abs().sum() > 0


def test_weight_drop_shares_one_mask_across_the_batch():
    model = make(weight_drop=0.5).train()
    same = tokens(B=1).expand(4, -1)  # four copies of one sequence
    logits = model(same)[0]
    for row in range(1, 4):  # up to rounding: the fused kernel may sum rows in different orders
        torch.testing.assert_close(logits[row], logits[0], rtol=0, atol=1e-6)
    assert (model(same)[0] - logits).abs().max() > 1e-3  # another mask moves them far past that tolerance


def test_weight_drop_refuses_a_layer_without_recurrent_weights():
    layer = torch.nn.Linear(3, 3)
    with pytest.raises(ConfigError, match=r"needs hidden-to-hidden weights \(weight_hh\).*Linear"):
        weight_dropped(layer, 0.5, torch.zeros(2, 3))


# ---------------------------------------------------------------- state and chunks


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "mingru"])
def test_two_chunks_with_the_state_carried_equal_one_call(cell):
    model = make(cell=cell, num_layers=2).double().eval()
    x = tokens(T=9)
    whole, final = model(x)
    first, state = model(x[:, :4])
    second, state = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-10)
    for a, b in zip(state, final, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_state_layout_and_initial_state():
    lstm = make(cell="lstm")
    state = lstm.initial_state(3)
    assert isinstance(state, LSTMState) and state.h.shape == (2, 3, 8) and state.c.abs().sum() == 0
    assert torch.equal(lstm(tokens(), state)[0], lstm(tokens())[0])
    gru_state = make(cell="gru")(tokens())[1]
    assert isinstance(gru_state, RNNState) and gru_state.h.shape == (2, 3, 8)


def test_predict_gives_next_token_probabilities_and_the_state():
    model = make(output_dropout=0.5).train()
    x = tokens()
    probs, state = model.predict(x)
    assert model.training
    assert probs.shape == (3, 7, V)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 7))
    more, _ = model.predict(tokens(T=2, seed=5), state)  # goes on from the carried state
    torch.testing.assert_close(more, model.predict(torch.cat([x, tokens(T=2, seed=5)], 1))[0][:, 7:])


# ---------------------------------------------------------------- loss


def test_loss_ignores_padded_positions():
    model = make().double().eval()
    x, y = tokens(T=6), tokens(T=6, seed=9)
    lengths = torch.tensor([6, 2, 4])
    loss = model.loss(x, y, lengths)[0]
    per_row = [
        F.cross_entropy(model(x[b : b + 1, :n])[0][0], y[b, :n], reduction="sum")
        for b, n in enumerate(lengths)
    ]
    torch.testing.assert_close(loss, sum(per_row) / lengths.sum(), rtol=0, atol=1e-10)
    x2, y2 = x.clone(), y.clone()
    x2[1, 2:], y2[1, 2:] = 5, -1  # anything in the padding, out-of-range targets included
    torch.testing.assert_close(model.loss(x2, y2, lengths)[0], loss, rtol=0, atol=1e-12)


def test_a_few_adam_steps_learn_a_repeated_sequence():
    torch.manual_seed(0)
    model = make(hidden_size=16, embedding_dim=16)  # two layers, tied
    text = torch.tensor([1, 4, 2, 7, 3] * 5)[None]  # (1, 25): a period-5 pattern
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        loss, _ = model.loss(text[:, :-1], text[:, 1:])
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * math.log(V)  # from about ln V (uniform) to a small fraction of it


# ---------------------------------------------------------------- contract and errors


def test_registered_and_config_round_trips():
    model = build_model({"name": "language_model", "vocab_size": 7, "weight_drop": 0.3})
    assert isinstance(model, LanguageModel)
    assert validate(LanguageModelConfig, model.config.model_dump()) == model.config


def test_hidden_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match=r"hidden_dropout=0.2 acts between layers, and num_layers=1"):
        make(num_layers=1, hidden_dropout=0.2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cell": "mingru", "weight_drop": 0.5}, r"cell='mingru' has none: set weight_drop=0"),
        ({"cell": "minlstm", "layer_norm": True}, r"no layer_norm"),
        ({"weight_drop": 1.0}, r"weight_drop"),
        ({"bidirectional": True}, r"unknown key 'bidirectional'"),
    ],
)
def test_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(LanguageModelConfig, {"vocab_size": V, **options}, source="model")


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        (torch.zeros(3, 6, dtype=torch.long), ShapeError, r"\(B, T\) = \(3, 7\).*got \(3, 6\)"),
        (torch.zeros(3, 7), ShapeError, r"integer token ids .* torch.float32"),
        (torch.full((3, 7), V), DataError, r"target ids must lie in \[0, 11\).*\[11, 11, 11, 11, 11\]"),
    ],
)
def test_target_errors(targets, error, message):
    with pytest.raises(error, match=message):
        make().loss(tokens(), targets)


def test_state_of_the_wrong_kind_is_refused():
    with pytest.raises(ShapeError, match=r"state must be LSTMState"):
        make(cell="lstm")(tokens(), RNNState(torch.zeros(2, 3, 8)))
    with pytest.raises(ShapeError, match=r"L\*K = 2"):
        make(cell="gru")(tokens(), RNNState(torch.zeros(3, 3, 8)))


# ---------------------------------------------------------------- the predictor's generate


def test_predictor_generates_by_beam_search_and_width_one_is_greedy(tmp_path):
    codec = TextCodec.fit(["the cat sat on the mat."], level="char")
    model = make(vocab_size=len(codec.vocab)).eval()
    config = {"task": "language_model", "data": {"path": "corpus.txt"}, "model": model.config.model_dump()}
    save_bundle(tmp_path / "lm", model, config, {"codec": codec.state_dict()})
    predictor = rnnkit.load(tmp_path / "lm")
    greedy = predictor.generate("the c", 12, greedy=True)
    assert predictor.generate("the c", 12, beam_width=1) == greedy
    best = predictor.generate("the c", 12, beam_width=4)
    assert best.startswith("the c") and "<unk>" not in best and len(best) <= len("the c") + 12
    with pytest.raises(ConfigError, match=r"beam search \(beam_width=4\) samples nothing: drop temperature"):
        predictor.generate("the c", 12, beam_width=4, temperature=0.5)
