"""The encoder keys the task model configs share: one definition, flat YAML keys, old configs still load."""

from pathlib import Path

import pytest
import torch
import yaml

from rnnkit.config import validate
from rnnkit.errors import ConfigError
from rnnkit.models import ClassifierConfig, ForecasterConfig, LanguageModelConfig, model_config
from rnnkit.models.encoder import EncoderConfig, RecurrentConfig, build_encoder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODEL_OF_TASK = {
    "forecast": "forecaster",
    "caption": "captioner",
    "classify": "classifier",
    "classify_series": "classifier",
    "anomaly": "autoencoder",
    "next_item": "language_model",
    "speech": "ctc",
    "language_model": "language_model",
    "music": "piano_roll",
    "seq2seq": "seq2seq",
    "tag": "tagger",
    "algorithmic": "bit_sequence",
    "rl": "recurrent_agent",
}
FROM_DATA = {  # the keys a task fills from the data before it builds the model
    "forecaster": {"lookback": 8},
    "autoencoder": {"input_size": 1},
    "ctc": {"input_size": 13, "num_labels": 10},
    "captioner": {"input_size": 64, "vocab_size": 30},
    "classifier": {"vocab_size": 50, "num_classes": 2},
    "language_model": {"vocab_size": 50},
    "piano_roll": {},
    "seq2seq": {"source_vocab_size": 30, "target_vocab_size": 40},
    "tagger": {"vocab_size": 50, "num_tags": 12, "char_vocab_size": 30},
    "bit_sequence": {"input_size": 9, "output_size": 8},
    "recurrent_agent": {"observation_size": 4, "action_sizes": [4]},
}
FROM_RECORDINGS = {"input_size": 6, "num_classes": 4}  # classify_series: the classifier over numbers
RECURRENT = {"cell", "hidden_size", "num_layers", "layer_norm", "init"}
ENCODER = RECURRENT | {"bidirectional", "nonlinearity", "dropout", "recurrent_dropout", "zoneout"}

# model sections of config.yaml as saved before the encoder keys were shared: every default filled in
SAVED = {
    "forecaster": {
        "name": "forecaster", "lookback": 4, "horizon": 1, "output_size": 1, "num_past": 0, "num_known": 0,
        "input_size": None, "strategy": "direct", "distribution": "point", "quantiles": [0.1, 0.5, 0.9],
        "teacher_forcing": 1.0, "cell": "lstm", "hidden_size": 64, "num_layers": 1, "bidirectional": False,
        "nonlinearity": "tanh", "dropout": 0.0, "layer_norm": False, "recurrent_dropout": 0.0,
        "zoneout": 0.0, "init": "default", "loss": "mse", "residual": False,
    },
    "classifier": {
        "name": "classifier", "vocab_size": 9, "num_classes": 2, "embedding_dim": 128, "padding_idx": 0,
        "cell": "lstm", "hidden_size": 128, "num_layers": 1, "bidirectional": False, "nonlinearity": "tanh",
        "dropout": 0.0, "embedding_dropout": 0.0, "recurrent_dropout": 0.0, "zoneout": 0.0,
        "output_dropout": 0.0, "layer_norm": False, "init": "default", "pooling": "last",
        "head": "multiclass",
    },
    "language_model": {
        "name": "language_model", "vocab_size": 9, "embedding_dim": 128, "hidden_size": 256, "num_layers": 2,
        "cell": "lstm", "tie_weights": True, "layer_norm": False, "init": "default", "embedding_dropout": 0.0,
        "input_dropout": 0.0, "hidden_dropout": 0.0, "output_dropout": 0.0, "weight_drop": 0.0,
    },
}  # fmt: skip
ADDED = {
    "forecaster": {"revin": False, "highway_window": 0, "static_cardinalities": [], "static_embedding": 4},
    "classifier": {"input_size": None, "conv_channels": [], "conv_kernel": 5, "chunk_size": None},
}


def test_the_task_configs_share_one_definition_of_the_encoder_keys():
    assert issubclass(ForecasterConfig, EncoderConfig) and issubclass(ClassifierConfig, EncoderConfig)
    assert issubclass(LanguageModelConfig, RecurrentConfig) and not issubclass(
        LanguageModelConfig, EncoderConfig
    )
    assert set(RecurrentConfig.model_fields) == RECURRENT and set(EncoderConfig.model_fields) == ENCODER
    for config in (ForecasterConfig, ClassifierConfig):
        assert set(config.model_fields) >= ENCODER
    assert set(LanguageModelConfig.model_fields) & ENCODER == RECURRENT


def test_each_task_keeps_its_own_defaults_and_cells():
    forecaster = ForecasterConfig(lookback=4)
    classifier = ClassifierConfig(vocab_size=9, num_classes=2)
    language = LanguageModelConfig(vocab_size=9)
    assert (forecaster.hidden_size, forecaster.num_layers) == (64, 1)
    assert (classifier.hidden_size, classifier.num_layers) == (128, 1)
    assert (language.hidden_size, language.num_layers) == (256, 2)
    assert ClassifierConfig(vocab_size=9, num_classes=2, cell="mingru").cell == "mingru"
    assert LanguageModelConfig(vocab_size=9, cell="minlstm").cell == "minlstm"
    with pytest.raises(ConfigError, match=r"cell: Input should be 'rnn', 'lstm' or 'gru' \(got 'mingru'\)"):
        validate(ForecasterConfig, {"lookback": 4, "cell": "mingru"}, source="model")


@pytest.mark.parametrize("name", sorted(SAVED))
def test_a_config_saved_before_loads_to_the_same_values_with_its_name_first(name):
    config = model_config(SAVED[name])
    dumped = config.model_dump(mode="json")
    assert {key: dumped[key] for key in SAVED[name]} == SAVED[name] and next(iter(dumped)) == "name"
    # keys added since, at defaults that keep the old behaviour
    assert {k: v for k, v in dumped.items() if k not in SAVED[name]} == ADDED.get(name, {})
    assert model_config(dumped) == config


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_flat_model_keys_of_every_shipped_config_still_validate(path):
    run = yaml.safe_load(path.read_text())
    name = MODEL_OF_TASK[run["task"]]
    filled = FROM_RECORDINGS if run["task"] == "classify_series" else FROM_DATA[name]
    config = model_config({"name": name, **filled, **run["model"]})
    assert {key: getattr(config, key) for key in run["model"]} == run["model"]


@pytest.mark.parametrize(
    ("key", "value"), [("bidirectional", True), ("dropout", 0.2), ("zoneout", 0.1), ("nonlinearity", "relu")]
)
def test_a_language_model_refuses_the_encoder_keys_it_cannot_take(key, value):
    with pytest.raises(ConfigError, match=rf"^model: unknown key '{key}'; "):
        validate(LanguageModelConfig, {"vocab_size": 9, key: value}, source="model")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"init": "orthogonl"}, r"^model: init: unknown initialiser 'orthogonl'.*'orthogonal'"),
        ({"cell": "gru", "nonlinearity": "relu"}, r"^model: nonlinearity='relu' applies to cell='rnn' only"),
        (
            {"cell": "mingru", "recurrent_dropout": 0.1},
            r"cell='mingru' has no recurrent weights.*no recurrent",
        ),
        ({"num_layers": 0}, r"^model: num_layers: Input should be greater than 0 \(got 0\)"),
    ],
)
def test_encoder_config_errors_name_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(EncoderConfig, options, source="model")


def test_the_config_builds_the_encoder_that_build_encoder_builds():
    config = EncoderConfig(
        cell="gru", hidden_size=6, num_layers=2, bidirectional=True, dropout=0.2, zoneout=0.1
    )
    torch.manual_seed(0)
    built = config.encoder(3)
    torch.manual_seed(0)
    expected = build_encoder("gru", 3, 6, 2, True, dropout=0.2, zoneout=0.1)
    assert repr(built) == repr(expected)
    for (name, a), (other, b) in zip(built.state_dict().items(), expected.state_dict().items(), strict=True):
        assert name == other and torch.equal(a, b)
    assert config.encoder(3, bidirectional=False).output_size == 6 and built.output_size == 12
