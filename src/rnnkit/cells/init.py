"""Weight initialisers by name, applied per gate block as Keras and the papers do."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.errors import unknown_name

# name -> (input-weight initialiser, recurrent-weight initialiser); "default" is torch.nn's scheme.
_SCHEMES = {
    "xavier": (nn.init.xavier_uniform_, nn.init.xavier_uniform_),
    "glorot": (nn.init.xavier_uniform_, nn.init.xavier_uniform_),
    "he": (
        lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    ),
    "kaiming": (
        lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    ),
    "orthogonal": (nn.init.xavier_uniform_, nn.init.orthogonal_),
}
INITIALISERS = ("default", *_SCHEMES)


def check_init(name: str) -> str:
    if name not in INITIALISERS:
        raise unknown_name("initialiser", name, INITIALISERS)
    return name


@torch.no_grad()
def init_recurrent_weights(
    weight_ih: Tensor,
    weight_hh: Tensor,
    biases: list[Tensor],
    num_gates: int,
    scheme: str,
) -> None:
    """Initialise (G*H, D) and (G*H, H) weights in place.

    "default": U(-1/sqrt(H), 1/sqrt(H)) on every tensor, as torch.nn.RNN/LSTM/GRU.
    "xavier"/"glorot" (Glorot & Bengio 2010) and "he"/"kaiming" (He et al. 2015, for relu) act on each
    gate's (H, D) or (H, H) block; "orthogonal" (Saxe et al. 2014) makes each recurrent block
    orthogonal and Glorot-initialises the input weights (the Keras default). Biases start at zero
    except with "default".
    """
    hidden_size = weight_hh.shape[1]
    if check_init(scheme) == "default":
        bound = 1.0 / math.sqrt(hidden_size)
        for w in (weight_ih, weight_hh, *biases):
            w.uniform_(-bound, bound)
        return
    init_ih, init_hh = _SCHEMES[scheme]
    for block in weight_ih.chunk(num_gates, 0):
        init_ih(block)
    for block in weight_hh.chunk(num_gates, 0):
        init_hh(block)
    for b in biases:
        b.zero_()
