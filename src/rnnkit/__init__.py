"""rnnkit: recurrent neural networks on PyTorch.

Shape letters, used in every docstring and shape comment (batch first everywhere):
    B batch, T time steps, D input features, H hidden units, G gates,
    L layers, K directions (1 or 2), V vocabulary.
"""

from rnnkit.cells import (
    DNCCell,
    DNCState,
    GRUCell,
    LSTMCell,
    LSTMState,
    MinGRUCell,
    MinLSTMCell,
    NTMCell,
    NTMState,
    RecurrentCell,
    RNNCell,
    RNNState,
)
from rnnkit.errors import ConfigError, DataError, DTypeError, RnnkitError, ShapeError, TrainingError
from rnnkit.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    DNCEncoder,
    MinGRU,
    MinLSTM,
    NTMEncoder,
    Recurrent,
    RNNOutput,
    Stacked,
    Streamer,
)
from rnnkit.version import __version__


def load(path, device=None):
    """A trained bundle as a Predictor with its task's verbs (``forecast``, ``predict``, ``generate``,
    ``explain``, ``evaluate``, ``describe``); see :func:`rnnkit.predictor.load`."""
    from rnnkit.predictor import load as load_predictor  # tasks and pandas load only when used

    return load_predictor(path, device)


__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "ConfigError",
    "DNCCell",
    "DNCEncoder",
    "DNCState",
    "DTypeError",
    "DataError",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "NTMCell",
    "NTMEncoder",
    "NTMState",
    "RNNCell",
    "RNNOutput",
    "RNNState",
    "Recurrent",
    "RecurrentCell",
    "RnnkitError",
    "ShapeError",
    "Stacked",
    "Streamer",
    "TrainingError",
    "__version__",
    "load",
]
