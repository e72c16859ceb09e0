"""The public layer API: explicit constructor arguments, the documented init facts, the documented
state layout, and the names rnnkit exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import rnnkit
import rnnkit.errors
import rnnkit.train

D, H = 5, 7
COMMON = {
    "num_layers": 1,
    "bidirectional": False,
    "dropout": 0.0,
    "layer_norm": False,
    "recurrent_dropout": 0.0,
    "zoneout": 0.0,
    "bias": True,
    "init": "default",
    "learn_initial_state": False,
    "residual": False,
    "path": "auto",
}
DEFAULTS = {
    rnnkit.RNN: {**COMMON, "nonlinearity": "tanh"},
    rnnkit.GRU: COMMON,
    rnnkit.LSTM: {**COMMON, "forget_bias": 1.0},
    rnnkit.MinGRU: {
        "num_layers": 1,
        "bidirectional": False,
        "dropout": 0.0,
        "bias": True,
        "scan": "auto",
        "residual": False,
    },
}
DEFAULTS[rnnkit.MinLSTM] = DEFAULTS[rnnkit.MinGRU]


# ---------------------------------------------------------------- exports


def test_training_error_is_exported_and_is_the_trainers():
    assert "TrainingError" in rnnkit.__all__
    assert rnnkit.TrainingError is rnnkit.errors.TrainingError
    # every training module raises that same class (one definition, in errors.py)
    names = [f"rnnkit.train.{m.name}" for m in pkgutil.iter_modules(rnnkit.train.__path__)]
    raisers = [n for n in names if hasattr(importlib.import_module(n), "TrainingError")]
    assert raisers
    for name in raisers:
        assert importlib.import_module(name).TrainingError is rnnkit.TrainingError, name
    assert issubclass(rnnkit.TrainingError, rnnkit.RnnkitError)
    assert issubclass(rnnkit.TrainingError, RuntimeError)


def test_everything_in_all_exists():
    for name in rnnkit.__all__:
        assert hasattr(rnnkit, name), name


# ---------------------------------------------------------------- explicit constructors


@pytest.mark.parametrize("layer", list(DEFAULTS), ids=lambda c: c.__name__)
def test_constructors_name_every_argument(layer):
    parameters = inspect.signature(layer).parameters
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    assert list(parameters)[:2] == ["input_size", "hidden_size"]
    defaults = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == DEFAULTS[layer]


@pytest.mark.parametrize("layer", [rnnkit.RNN, rnnkit.GRU, rnnkit.LSTM], ids=lambda c: c.__name__)
def test_unknown_keywords_are_a_type_error(layer):
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        layer(D, H, hidden=3)


def test_the_readme_options_reach_every_cell():
    layer = rnnkit.LSTM(
        8,
        32,
        num_layers=2,
        layer_norm=True,
        recurrent_dropout=0.25,
        zoneout=0.1,
        init="orthogonal",
        learn_initial_state=True,
    )
    assert layer.path == "cell"
    for cell in layer.cells:
        assert (cell.layer_norm, cell.recurrent_dropout, cell.zoneout) == (True, 0.25, 0.1)
        assert (cell.init, cell.learn_initial_state, cell.forget_bias) == ("orthogonal", True, 1.0)
        assert torch.equal(cell.bias_ih[32:64], torch.ones(32))
    assert rnnkit.LSTM(8, 32, num_layers=2, forget_bias=2.5).cells[1].forget_bias == 2.5
    relu = rnnkit.RNN(8, 32, num_layers=2, nonlinearity="relu")
    assert relu.nonlinearity == "relu" and all(cell.nonlinearity == "relu" for cell in relu.cells)
    with pytest.raises(rnnkit.ConfigError, match="unknown nonlinearity 'gelu'"):
        rnnkit.RNN(8, 32, nonlinearity="gelu")


@pytest.mark.parametrize("layer", [*DEFAULTS], ids=lambda c: c.__name__)
def test_docstrings_are_filled_in(layer):
    doc = layer.__doc__
    for section in ("Args:", "Inputs:", "Outputs:", "Attributes:", "Notes:", "Example:", "(B, T, D)"):
        assert section in doc, section
    assert "%(" not in doc and "{state" not in doc


# ---------------------------------------------------------------- initialisation, as documented


@pytest.mark.parametrize("shape", [{}, {"num_layers": 2, "bidirectional": True}], ids=["1x1", "2x2"])
@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_torch_initialisation_exactly(name, shape):
    # the LSTM needs forget_bias=None; RNN and GRU have no such option and match as they are
    options = {"forget_bias": None} if name == "LSTM" else {}
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(D, H, batch_first=True, **shape).state_dict()
    torch.manual_seed(0)
    ours = getattr(rnnkit, name)(D, H, **shape, **options).state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("forget_bias", [1.0, 0.0])
def test_forget_bias_sets_only_the_forget_gate_biases(forget_bias):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(D, H, batch_first=True, num_layers=2).state_dict()
    torch.manual_seed(0)
    ours = rnnkit.LSTM(D, H, num_layers=2, forget_bias=forget_bias).state_dict()
    forget = slice(H, 2 * H)
    for key, value in theirs.items():
        if key.startswith("bias"):
            expected = forget_bias if key.startswith("bias_ih") else 0.0
            assert torch.equal(ours[key][forget], torch.full((H,), expected)), key
            assert not torch.equal(ours[key], value), key  # so not torch's init, even at 0.0
            keep = torch.ones(4 * H, dtype=torch.bool)
            keep[forget] = False
            assert torch.equal(ours[key][keep], value[keep]), key
        else:
            assert torch.equal(ours[key], value), key


# ---------------------------------------------------------------- the documented state layout


@pytest.mark.parametrize("path", ["fused", "cell"])
def test_bidirectional_final_states_sit_where_the_notes_say(path):
    torch.manual_seed(0)
    layer = rnnkit.GRU(D, H, num_layers=2, bidirectional=True, path=path)
    x = torch.randn(3, 6, D)
    lengths = torch.tensor([6, 4, 1])
    out = layer(x, lengths=lengths)
    top = out.state.h.view(2, 2, 3, H)[-1]  # (K, B, H)
    torch.testing.assert_close(top[1], out.outputs[:, 0, H:])
    last = out.outputs[torch.arange(3), lengths - 1, :H]  # (B, H)
    torch.testing.assert_close(top[0], last)
    assert torch.equal(out.outputs[1:, -1], torch.zeros(2, 2 * H))
