"""Layers own the time axis: Recurrent(cell), Stacked, Bidirectional, RNN/LSTM/GRU, MinGRU/MinLSTM,
NTMEncoder and DNCEncoder (Neural Turing Machines, Differentiable Neural Computers); attention over
a padded sequence; a linear-chain CRF."""

from rnnkit.layers.attention import AdditiveAttention, MultiplicativeAttention, build_attention
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.crf import CRF, Constraints, scheme_constraints
from rnnkit.layers.minimal import MinGRU, MinLSTM
from rnnkit.layers.ntm import DNCEncoder, NTMEncoder
from rnnkit.layers.recurrent import Recurrent, RNNOutput
from rnnkit.layers.rnn import GRU, LSTM, RNN
from rnnkit.layers.stacked import Stacked
from rnnkit.layers.streaming import Streamer

__all__ = [
    "CRF",
    "GRU",
    "LSTM",
    "RNN",
    "AdditiveAttention",
    "Bidirectional",
    "Constraints",
    "DNCEncoder",
    "MinGRU",
    "MinLSTM",
    "MultiplicativeAttention",
    "NTMEncoder",
    "RNNOutput",
    "Recurrent",
    "Stacked",
    "Streamer",
    "build_attention",
    "scheme_constraints",
]
