"""SequenceClassifier: padding invariance, pooling, heads and losses, embeddings, regularisers, errors."""

import pytest
import torch
import torch.nn.functional as F

from rnnkit.config import validate
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.layers import RNNOutput
from rnnkit.models import ClassifierConfig, SequenceClassifier, build_model
from rnnkit.models.encoder import Pooling, final_states

V, C = 20, 3
POOLINGS = ["last", "mean", "max", "attention", "concat"]


def make(**options) -> SequenceClassifier:
    torch.manual_seed(0)
    defaults = {"vocab_size": V, "num_classes": C, "embedding_dim": 6, "hidden_size": 5}
    return SequenceClassifier(ClassifierConfig(**{**defaults, **options}))


def texts(lengths, seed=1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, V, (n,), generator=g) for n in lengths]


def padded(seqs, total: int, seed=2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids in the padding too: nothing there may reach the result."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, V, (len(seqs), total), generator=g)
    for row, seq in enumerate(seqs):
        batch[row, : len(seq)] = seq
    return batch, torch.tensor([len(s) for s in seqs])


# ---------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
def test_prediction_does_not_depend_on_the_batch(cell, bidirectional, pooling):
    model = make(cell=cell, bidirectional=bidirectional, pooling=pooling, num_layers=2).double().eval()
    seqs = texts([3, 8, 1, 5])
    alone = [model(s[None]) for s in seqs]  # each text by itself: no padding, no lengths
    for total, order in ((8, [0, 1, 2, 3]), (13, [3, 2, 1, 0])):  # more padding, other neighbours
        tokens, lengths = padded([seqs[i] for i in order], total, seed=total)
        batch = model(tokens, lengths)
        for row, i in enumerate(order):
            torch.testing.assert_close(batch.logits[row], alone[i].logits[0], rtol=0, atol=1e-10)
            if pooling == "attention":
                n = len(seqs[i])
                torch.testing.assert_close(
                    batch.attention[row, :n], alone[i].attention[0], rtol=0, atol=1e-10
                )
                assert batch.attention[row, n:].eq(0).all()
            else:
                assert batch.attention is None


def test_padding_invariance_on_the_cell_path_with_layer_norm():
    model = make(layer_norm=True, bidirectional=True, pooling="mean").double().eval()
    assert model.encoder.path == "cell"
    seqs = texts([2, 6])
    tokens, lengths = padded(seqs, 9)
    batch = model(tokens, lengths).logits
    for row, seq in enumerate(seqs):
        torch.testing.assert_close(batch[row], model(seq[None]).logits[0], rtol=0, atol=1e-10)


# ---------------------------------------------------------------- pooling


def test_attention_weights_are_zero_on_padding_and_sum_to_one():
    tokens, lengths = padded(texts([4, 1, 7]), 7)
    attention = make(pooling="attention")(tokens, lengths).attention
    assert attention.shape == (3, 7)
    mask = torch.arange(7)[None] < lengths[:, None]
    assert attention[~mask].eq(0).all() and attention[mask].gt(0).all()
    torch.testing.assert_close(attention.sum(1), torch.ones(3))


def test_last_pooling_reads_forward_at_the_last_real_step_and_backward_at_step_zero():
    model = make(bidirectional=True, num_layers=2).double().eval()
    tokens, lengths = padded(texts([5, 2, 7]), 7)
    encoded = model.encoder(model.embedding(tokens), lengths=lengths)
    H = model.config.hidden_size
    expected = torch.stack(
        [torch.cat([encoded.outputs[b, n - 1, :H], encoded.outputs[b, 0, H:]]) for b, n in enumerate(lengths)]
    )
    torch.testing.assert_close(final_states(encoded.state, 2), expected, rtol=0, atol=1e-12)


def test_mean_and_max_pooling_over_real_steps_only():
    outputs = torch.randn(2, 6, 4)
    mask = torch.arange(6)[None] < torch.tensor([[3], [6]])  # (2, 6)
    outputs = outputs.masked_fill(~mask[..., None], 1e6)  # a huge padded value must not count
    mean, weights = Pooling("mean", 4)(RNNOutput(outputs, None), mask)
    assert weights is None
    torch.testing.assert_close(mean, torch.stack([outputs[0, :3].mean(0), outputs[1].mean(0)]))
    largest = Pooling("max", 4)(RNNOutput(outputs, None), mask)[0]
    assert torch.equal(largest, torch.stack([outputs[0, :3].amax(0), outputs[1].amax(0)]))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_concat_pooling_is_last_max_and_mean_side_by_side(bidirectional):
    model = make(pooling="concat", bidirectional=bidirectional, num_layers=2).double().eval()
    K = 2 if bidirectional else 1
    assert model.pooling.size == 3 * K * 5 == model.head.in_features
    tokens, lengths = padded(texts([4, 1, 7]), 7)
    encoded = model.encoder(model.embedding(tokens), lengths=lengths)
    mask = torch.arange(7)[None] < lengths[:, None]  # (B, T)
    kinds = [Pooling(kind, K * 5, K)(encoded, mask)[0] for kind in ("last", "max", "mean")]
    pooled, weights = model.pooling(encoded, mask)
    assert weights is None and torch.equal(pooled, torch.cat(kinds, -1))
    torch.testing.assert_close(model(tokens, lengths).logits, model.head(pooled), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- heads and losses


def test_binary_head_one_logit_bce_and_probability_of_class_one():
    model = make(head="binary", num_classes=2)
    tokens, lengths = padded(texts([4, 2, 3]), 4)
    logits = model(tokens, lengths).logits
    assert logits.shape == (3,)
    labels = torch.tensor([1, 0, 1])
    loss, state = model.loss(tokens, labels, lengths)
    assert state is None
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, labels.float()))
    torch.testing.assert_close(model.predict(tokens, lengths), torch.sigmoid(logits.detach()))
    model.loss(tokens, labels.float(), lengths)  # float 0/1 labels work as well


def test_multiclass_head_softmax_cross_entropy():
    model = make(head="multiclass")
    tokens, lengths = padded(texts([4, 2]), 4)
    logits = model(tokens, lengths).logits
    labels = torch.tensor([2, 0])
    torch.testing.assert_close(model.loss(tokens, labels, lengths)[0], F.cross_entropy(logits, labels))
    probs = model.predict(tokens, lengths)
    assert probs.shape == (2, C)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_multilabel_head_independent_sigmoids():
    model = make(head="multilabel")
    tokens, lengths = padded(texts([4, 2]), 4)
    logits = model(tokens, lengths).logits
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(
        model.loss(tokens, labels, lengths)[0], F.binary_cross_entropy_with_logits(logits, labels)
    )
    torch.testing.assert_close(model.predict(tokens, lengths), torch.sigmoid(logits.detach()))


def test_predict_is_eval_mode_and_restores_training():
    model = make(output_dropout=0.5, embedding_dropout=0.5).train()
    tokens = torch.randint(1, V, (3, 5))
    first = model.predict(tokens)
    assert model.training
    assert torch.equal(first, model.predict(tokens))


def test_dropouts_act_in_training_only():
    model = make(output_dropout=0.5, embedding_dropout=0.3).train()
    tokens = torch.randint(1, V, (4, 6))
    assert not torch.equal(model(tokens).logits, model(tokens).logits)
    model.eval()
    assert torch.equal(model(tokens).logits, model(tokens).logits)
    plain = make().train()  # every rate 0: training mode is deterministic too
    assert torch.equal(plain(tokens).logits, plain(tokens).logits)


def test_a_few_adam_steps_learn_which_token_decides():
    torch.manual_seed(0)
    model = make(head="binary", num_classes=2, pooling="max")
    tokens = torch.randint(2, V, (32, 6))
    labels = torch.randint(0, 2, (32,))
    tokens[labels == 1, 3] = 1  # class 1 texts hold token 1
    tokens[labels == 0] = torch.where(tokens[labels == 0] == 1, 2, tokens[labels == 0])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    first = model.loss(tokens, labels)[0].item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.loss(tokens, labels)[0]
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first
    assert ((model.predict(tokens) > 0.5).long() == labels).float().mean() > 0.9


# ---------------------------------------------------------------- embeddings


def test_load_embeddings_uses_the_vectors_and_freezes_on_request():
    model = make()
    vectors = torch.randn(V, 6)
    model.load_embeddings(vectors, freeze=True)
    assert torch.equal(model.embedding.weight, vectors)
    tokens = torch.randint(1, V, (2, 4))
    model.loss(tokens, torch.tensor([0, 1]))[0].backward()
    assert model.embedding.weight.grad is None
    assert model.head.weight.grad is not None
    model.load_embeddings(vectors)  # freeze=False trains them again
    assert model.embedding.weight.requires_grad


def test_load_embeddings_wrong_shape_names_both():
    with pytest.raises(ShapeError, match=r"\(vocab_size, embedding_dim\) = \(20, 6\), got \(20, 50\)"):
        make().load_embeddings(torch.zeros(V, 50))


# ---------------------------------------------------------------- contract and config


@pytest.mark.parametrize("options", [{"pooling": "attention"}, {"pooling": "concat"}])
def test_registered_and_config_round_trips(options):
    model = build_model({"name": "classifier", "vocab_size": 9, "num_classes": 4, **options})
    assert isinstance(model, SequenceClassifier)
    again = validate(ClassifierConfig, model.config.model_dump())
    assert again == model.config and again.pooling == options["pooling"]
    assert model.initial_state(3) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"head": "binary"}, r"head='binary'.*num_classes must be 2, got 3"),
        ({"head": "multiclass", "num_classes": 1}, r"num_classes >= 2, got 1"),
        ({"cell": "mingru", "layer_norm": True}, r"cell='mingru'.*no layer_norm"),
        ({"cell": "minlstm", "zoneout": 0.1, "init": "orthogonal"}, r"no zoneout, init: drop them"),
        ({"cell": "gru", "nonlinearity": "relu"}, r"nonlinearity='relu' applies to cell='rnn' only"),
        ({"padding_idx": 20}, r"padding_idx=20 must be a token id below vocab_size=20"),
        ({"pooling": "sum"}, r"pooling"),
        ({"init": "glorious"}, r"init.*unknown initialiser 'glorious'"),
        ({"hidden": 3}, r"unknown key 'hidden'"),
    ],
)
def test_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(ClassifierConfig, {"vocab_size": V, "num_classes": C, **options}, source="model")


@pytest.mark.parametrize(
    ("head", "targets", "error", "message"),
    [
        ("multiclass", torch.tensor([0.0, 1.0]), ShapeError, r"int64 class ids, got dtype torch.float32"),
        ("multiclass", torch.tensor([0, 3]), DataError, r"class ids must lie in \[0, 3\).*max 3"),
        ("multiclass", torch.tensor([[0], [1]]), ShapeError, r"must be \(2,\), got \(2, 1\)"),
        ("multilabel", torch.tensor([0, 1]), ShapeError, r"must be \(2, 3\), got \(2,\)"),
        ("multilabel", torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]), DataError, r"multi-hot rows of 0/1"),
        ("binary", torch.tensor([0, 2]), DataError, r"0/1 labels"),
    ],
)
def test_target_errors(head, targets, error, message):
    model = make(head=head, num_classes=2 if head == "binary" else C)
    with pytest.raises(error, match=message):
        model.loss(torch.randint(1, V, (2, 3)), targets)


def test_a_carried_state_is_refused():
    model = make()
    with pytest.raises(ConfigError, match=r"carries no state.*without train.tbptt"):
        model.loss(torch.randint(1, V, (2, 3)), torch.tensor([0, 1]), state=(torch.zeros(1, 2, 5),))


@pytest.mark.parametrize(
    ("tokens", "error", "message"),
    [
        (torch.ones(2, 3), ShapeError, r"integer ids \(torch.long\), got dtype torch.float32"),
        (torch.ones(3, dtype=torch.long), ShapeError, r"\(B, T\), got shape \(3,\): add a batch dimension"),
        (torch.tensor([[1, 20]]), DataError, r"token ids must lie in \[0, 20\).*max 20"),
        (torch.zeros(0, 3, dtype=torch.long), ShapeError, r"tokens are empty"),
    ],
)
def test_token_errors(tokens, error, message):
    with pytest.raises(error, match=message):
        make()(tokens)


def test_lengths_are_checked():
    with pytest.raises(ShapeError, match=r"lengths must lie in \[1, 3\]"):
        make()(torch.ones(2, 3, dtype=torch.long), lengths=[3, 4])


@pytest.mark.parametrize("pooling", POOLINGS)
def test_reading_on_in_pieces_gives_what_reading_the_whole_gives(pooling):
    torch.manual_seed(0)
    keys = {"vocab_size": 30, "num_classes": 3, "head": "multiclass", "hidden_size": 8, "embedding_dim": 6}
    model = build_model({"name": "classifier", "num_layers": 2, "pooling": pooling, **keys})
    model.train()  # read_on reads in eval mode whatever the model's mode, and restores it
    tokens = torch.randint(1, 30, (2, 9))
    whole = model.eval()(tokens).logits
    model.train()
    read = None
    for piece in (tokens[:, :4], tokens[:, 4:5], tokens[:, 5:]):
        output, read = model.read_on(piece, read)
    torch.testing.assert_close(output.logits, whole)
    assert model.training and read.outputs.shape[1] == 9


def test_a_classifier_that_reads_backwards_cannot_read_on():
    model = build_model({"name": "classifier", "vocab_size": 30, "num_classes": 2, "bidirectional": True})
    with pytest.raises(ConfigError, match="reads backwards, so it cannot read on step by step"):
        model.read_on(torch.ones(1, 3, dtype=torch.long))
