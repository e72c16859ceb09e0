"""Cells: one time step each, with torch.nn's parameter names and gate order."""

from rnnkit.cells.base import LSTMState, RecurrentCell, RNNState
from rnnkit.cells.dnc import DNCCell, DNCState
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.init import INITIALISERS
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal import MinGRUCell, MinimalCell, MinLSTMCell
from rnnkit.cells.ntm import NTMCell, NTMState
from rnnkit.cells.rnn import RNNCell

__all__ = [
    "INITIALISERS",
    "DNCCell",
    "DNCState",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "MinGRUCell",
    "MinLSTMCell",
    "MinimalCell",
    "NTMCell",
    "NTMState",
    "RNNCell",
    "RNNState",
    "RecurrentCell",
]
