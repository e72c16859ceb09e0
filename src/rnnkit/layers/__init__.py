"""Layers own the time axis: Recurrent(cell), Stacked, Bidirectional, RNN/LSTM/GRU, MinGRU/MinLSTM."""

from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.minimal import MinGRU, MinLSTM
from rnnkit.layers.recurrent import Recurrent, RNNOutput
from rnnkit.layers.rnn import GRU, LSTM, RNN
from rnnkit.layers.stacked import Stacked
from rnnkit.layers.streaming import Streamer

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "MinGRU",
    "MinLSTM",
    "RNNOutput",
    "Recurrent",
    "Stacked",
    "Streamer",
]
