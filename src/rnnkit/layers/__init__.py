"""Layers own the time axis: Recurrent(cell), Stacked, Bidirectional, and RNN/LSTM/GRU."""

from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent, RNNOutput
from rnnkit.layers.rnn import GRU, LSTM, RNN
from rnnkit.layers.stacked import Stacked

__all__ = ["GRU", "LSTM", "RNN", "Bidirectional", "RNNOutput", "Recurrent", "Stacked"]
