"""Seq2Seq: shapes, padding independence, teacher forcing and its schedules, checks, learning to reverse."""

import math

import pytest
import torch

from rnnkit.config import validate
from rnnkit.decoding import greedy_search
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.models.registry import build_model
from rnnkit.models.seq2seq import IGNORE, Seq2Seq, Seq2SeqConfig

VS, VT = 9, 8  # ids 0..3 are the specials (pad, unk, bos, eos)


def make(**options) -> Seq2Seq:
    torch.manual_seed(0)
    defaults = {"source_vocab_size": VS, "target_vocab_size": VT, "embedding_dim": 5, "hidden_size": 6}
    return Seq2Seq(Seq2SeqConfig(**{**defaults, **options}))


def batch(seed=1):
    """source (3, 5) with lengths [5, 2, 3]; targets (3, 4) with 4, 2 and 3 real tokens."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(4, VS, (3, 5), generator=g)
    targets = torch.randint(4, VT, (3, 4), generator=g)
    targets[1, 2:] = IGNORE
    targets[2, 3:] = IGNORE
    return source, torch.tensor([5, 2, 3]), targets


VARIANTS = [
    {},
    {"attention": "dot"},
    {"attention": "general", "bidirectional": True},
    {"attention": "concat", "num_layers": 2, "decoder_layers": 3},
    {"attention": "none", "bidirectional": True, "num_layers": 2},
    {"attention": "additive", "input_feeding": False, "bridge": "zeros"},
    {"cell": "gru", "bidirectional": True, "num_layers": 2},
    {"cell": "minlstm", "bidirectional": True},
    {"cell": "rnn", "layer_norm": True, "zoneout": 0.1},
]


@pytest.mark.parametrize("options", VARIANTS)
def test_output_shapes(options):
    source, lengths, targets = batch()
    out = make(**options)(source, lengths, targets)
    assert out.logits.shape == (3, 4, VT)
    if options.get("attention") == "none":
        assert out.attention is None
    else:
        assert out.attention.shape == (3, 4, 5)
        assert torch.all(out.attention[1, :, 2:] == 0)  # source 1 has 2 real steps
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(3, 4))


@pytest.mark.parametrize("options", VARIANTS)
def test_a_padded_batch_gives_each_example_alone(options):
    model = make(**options).eval()
    source, lengths, targets = batch()
    out = model(source, lengths, targets)
    for b, (n, m) in enumerate(zip(lengths.tolist(), (targets != IGNORE).sum(1).tolist(), strict=True)):
        alone = model(source[b : b + 1, :n], None, targets[b : b + 1, :m])
        torch.testing.assert_close(out.logits[b, :m], alone.logits[0], atol=1e-5, rtol=1e-5)
        if alone.attention is not None:
            torch.testing.assert_close(out.attention[b, :m, :n], alone.attention[0], atol=1e-5, rtol=1e-5)


def test_teacher_forcing_ratio_one_feeds_the_gold_tokens():
    model = make(teacher_forcing=1.0).train()
    source, lengths, targets = batch()
    expected = model.eval()(source, lengths, targets).logits
    torch.testing.assert_close(model.train()(source, lengths, targets).logits, expected)
    changed = targets.clone()
    changed[:, 0] = torch.where(changed[:, 0] == 4, 5, 4)
    assert not torch.allclose(model(source, lengths, changed).logits[:, 1], expected[:, 1])


def test_teacher_forcing_ratio_zero_feeds_the_models_own_argmax():
    model = make(teacher_forcing=0.0).train()
    source, lengths, targets = batch()
    logits = model(source, lengths, targets).logits
    other = torch.full_like(targets, 4)
    torch.testing.assert_close(model(source, lengths, other).logits, logits)  # gold never read
    memory = model.encode(source, lengths)
    tokens, state = torch.full((3,), model.config.bos_id), memory.state
    for t in range(targets.shape[1]):
        step, state, _ = model.decode_step(tokens, state, memory)
        torch.testing.assert_close(step, logits[:, t])
        tokens = step.argmax(-1)
    assert not torch.allclose(model.eval()(source, lengths, targets).logits, logits)  # eval: gold


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"teacher_forcing": 0.7}, [0.7, 0.7, 0.7]),
        (
            {"sampling_schedule": "linear", "sampling_k": 1.0, "sampling_c": 0.1, "sampling_min": 0.2},
            [1, 0.7, 0.2],
        ),
        ({"sampling_schedule": "linear", "sampling_k": 1.2, "sampling_c": 0.1}, [1, 0.9, 0.2]),
        ({"sampling_schedule": "exponential", "sampling_k": 0.9}, [1, 0.9**3, 0.9**10]),
        (
            {"sampling_schedule": "inverse_sigmoid", "sampling_k": 10.0},
            [10 / 11, 10 / (10 + math.exp(0.3)), 10 / (10 + math.e)],
        ),
    ],
)
def test_schedule_values_at_steps_0_3_10(options, expected):
    config = make(**options).config
    assert [config.ratio(i) for i in (0, 3, 10)] == pytest.approx(expected)


def test_inverse_sigmoid_far_out_is_zero_not_an_overflow():
    config = make(sampling_schedule="inverse_sigmoid", sampling_k=1.0).config
    assert config.ratio(10**6) == pytest.approx(0.0)


def test_training_batches_advance_the_schedule_and_survive_a_state_dict():
    model = make(sampling_schedule="exponential", sampling_k=0.5)
    source, lengths, targets = batch()
    for _ in range(3):
        model.loss(source, targets, lengths)
    model.eval()
    model.loss(source, targets, lengths)  # evaluation counts nothing
    assert int(model.batches_seen) == 3 and model.teacher_forcing_ratio() == 0.125
    other = make(sampling_schedule="exponential", sampling_k=0.5)
    other.load_state_dict(model.state_dict())
    assert other.teacher_forcing_ratio() == 0.125


def test_loss_is_the_mean_over_real_tokens_with_label_smoothing():
    model = make(label_smoothing=0.1).eval()
    source, lengths, targets = batch()
    loss, state = model.loss(source, targets, lengths)
    logits = model(source, lengths, targets).logits
    real = targets != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[real], targets[real], label_smoothing=0.1)
    assert state is None and model.initial_state(3) is None
    torch.testing.assert_close(loss, expected)


def test_recurrent_dropout_trains_and_is_off_in_eval():
    model = make(cell="lstm", recurrent_dropout=0.5, dropout=0.3, decoder_layers=2, embedding_dropout=0.2)
    source, lengths, targets = batch()
    model.loss(source, targets, lengths)[0].backward()
    model.eval()
    torch.testing.assert_close(model(source, lengths, targets).logits, model(source, lengths, targets).logits)


def test_the_registry_builds_it_and_the_config_round_trips():
    model = build_model({"name": "seq2seq", "source_vocab_size": VS, "target_vocab_size": VT})
    assert isinstance(model, Seq2Seq)
    dumped = model.config.model_dump()
    assert next(iter(dumped)) == "name" and Seq2SeqConfig(**dumped) == model.config


@pytest.mark.parametrize(
    "options, message",
    [
        ({"attention": "dot", "bidirectional": True}, "use attention='general' or bidirectional=False"),
        ({"attention": "none", "bridge": "zeros"}, "leaves the decoder blind to the source"),
        ({"eos_id": VT}, "eos_id=8 must be below target_vocab_size"),
        (
            {"sampling_schedule": "exponential", "sampling_k": 0.9, "teacher_forcing": 0.5},
            "drop teacher_forcing",
        ),
        (
            {"sampling_schedule": "exponential", "sampling_k": 0.9, "sampling_c": 1.0},
            "sampling_c does not apply",
        ),
        ({"sampling_k": 0.9}, "sampling_k does not apply to sampling_schedule='constant'"),
        ({"sampling_schedule": "linear", "sampling_k": 1.0}, "'linear' needs sampling_c"),
        ({"sampling_schedule": "exponential", "sampling_k": 1.0}, "need k < 1, got 1.0"),
        ({"sampling_schedule": "inverse_sigmoid", "sampling_k": 0.5}, "must be >= 1, got 0.5"),
    ],
)
def test_bad_configs_are_refused_naming_the_fix(options, message):
    data = {"name": "seq2seq", "source_vocab_size": VS, "target_vocab_size": VT, **options}
    with pytest.raises(ConfigError, match=message):
        validate(Seq2SeqConfig, data, source="model")


def test_bad_inputs_are_refused_naming_the_fix():
    model = make()
    source, lengths, targets = batch()
    with pytest.raises(ShapeError, match="tokens must be integer ids"):
        model(source.float(), lengths, targets)
    with pytest.raises(DataError, match=r"token ids must lie in \[0, 9\)"):
        model(source + VS, lengths, targets)
    with pytest.raises(DataError, match=r"a source sequence is empty \(length 0\).*drop empty pairs"):
        model(source, torch.tensor([5, 0, 3]), targets)
    with pytest.raises(
        ShapeError, match=r"targets must be \(B, T\) with B = 3 \(the source's\), got \(2, 4\)"
    ):
        model(source, lengths, targets[:2])
    with pytest.raises(ShapeError, match="targets must be integer token ids"):
        model(source, lengths, targets.float())
    with pytest.raises(ShapeError, match="targets have no steps"):
        model(source, lengths, targets[:, :0])
    with pytest.raises(
        DataError, match=r"target ids must lie in \[0, 8\) \(target_vocab_size\).*got \[8, 8, 8\]"
    ):
        model(source, lengths, torch.where(torch.arange(4) == 0, VT, targets))
    with pytest.raises(DataError, match=r"a target is all padding \(-100\)"):
        model(source, lengths, targets.index_fill(0, torch.tensor([1]), IGNORE))


def test_it_learns_to_reverse_five_tokens():
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        source_vocab_size=8, target_vocab_size=8, embedding_dim=16, hidden_size=32, cell="gru"
    )
    model = Seq2Seq(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def pairs(n):
        source = torch.randint(4, 8, (n, 5), generator=g)  # ids 4..7, past the specials
        return source, torch.cat([source.flip(1), torch.full((n, 1), config.eos_id)], 1)

    for _ in range(150):
        loss, _ = model.loss(*pairs(32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    source, _ = pairs(100)
    outputs = [h[0].tokens for h in greedy_search(model, source)]
    exact = sum(out == want for out, want in zip(outputs, source.flip(1).tolist(), strict=True))
    assert exact >= 90
