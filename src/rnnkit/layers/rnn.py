"""rnnkit.RNN, LSTM and GRU: drop-in relatives of torch.nn's, with the cells' extra options.

Two paths, one meaning: torch's fused kernels when every option allows them (the layer packs the
batch for ``lengths`` itself), else the cells in a time loop with the input projection hoisted out.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.checks import check_input, check_lengths, check_state
from rnnkit.errors import ConfigError, unknown_name
from rnnkit.layers.recurrent import RNNOutput
from rnnkit.layers.stacked import Stacked

PATHS = ("auto", "fused", "cell")
_INTERNAL = re.compile(r"layers\.(\d+)\.(?:(forward|backward)_layer\.)?cell\.(.+)")


def torch_name(internal: str) -> str:
    """ "layers.1.backward_layer.cell.weight_ih" -> "weight_ih_l1_reverse" (torch.nn's key)."""
    layer, direction, name = _INTERNAL.fullmatch(internal).groups()
    return f"{name.replace('.', '_')}_l{layer}" + ("_reverse" if direction == "backward" else "")


class _TorchLikeRNN(nn.Module):
    cell_class: ClassVar[type[nn.Module]]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        bias: bool = True,
        init: str = "default",
        learn_initial_state: bool = False,
        residual: bool = False,
        path: str = "auto",
    ) -> None:
        super().__init__()
        if path not in PATHS:
            raise unknown_name("path", path, PATHS)
        K = 2 if bidirectional else 1
        options = dict(bias=bias, init=init, layer_norm=layer_norm, learn_initial_state=learn_initial_state)
        options.update(recurrent_dropout=recurrent_dropout, zoneout=zoneout, **self._cell_options())
        self.stack = Stacked.of_cells(
            lambda size: self.cell_class(size, hidden_size, **options),
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            dropout,
            residual,
            hint=" Use recurrent_dropout or zoneout to regularise a single layer.",
        )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.bias = bidirectional, dropout, bias
        self.output_size = K * hidden_size
        self.num_states = num_layers * K
        self.cells = [m for m in self.stack.modules() if isinstance(m, self.cell_class)]
        self.state_type = self.cell_class.state_type
        fusable = not residual and all(cell.fusable for cell in self.cells)
        if path == "fused" and not fusable:
            raise ConfigError(
                "path='fused' needs options torch's kernels compute: layer_norm=False, recurrent_dropout=0, "
                "zoneout=0, learn_initial_state=False, residual=False; use path='auto' to fall back"
            )
        self.path = "fused" if fusable and path != "cell" else "cell"
        self._torch_names = {torch_name(n): n for n, _ in self.stack.named_parameters()}
        self.register_state_dict_post_hook(_rename_to_torch)
        self.register_load_state_dict_pre_hook(_rename_from_torch)

    def _cell_options(self) -> dict[str, Any]:
        """Options only this layer's cell class takes (RNN: nonlinearity, LSTM: forget_bias)."""
        return {}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            internal = self.__dict__.get("_torch_names", {}).get(name)
            if internal is None:
                raise
            return self.stack.get_parameter(internal)

    def initial_state(self, batch_size: int) -> NamedTuple:
        """Zeros, or the learned initial states; fields (L*K, B, H)."""
        return self.stack.initial_state(batch_size)

    def forward(self, x: Tensor, state: NamedTuple | Tensor | None = None, lengths=None) -> RNNOutput:
        """x (B, T, D), state fields (L*K, B, H) or None, lengths (B,) or None -> RNNOutput (class docs)."""
        if self.path == "cell":
            return self.stack(x, state, lengths)
        dtype = self.cells[0].weight_ih.dtype
        x = check_input(x, self.input_size, dtype)
        B, T, _ = x.shape
        lengths = check_lengths(lengths, B, T)
        shape = (self.num_states, B, self.hidden_size)
        if state is None:  # the fused path never has learned initial states: zeros, as torch.nn makes them
            state = self.state_type(*(x.new_zeros(shape) for _ in self.state_type._fields))
        else:
            state = check_state(state, self.state_type, shape, dtype)
        return self._fused(x, state, lengths)

    def _fused(self, x: Tensor, state: NamedTuple, lengths: Tensor | None) -> RNNOutput:
        weights = [
            w
            for cell in self.cells
            for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            if w is not None
        ]
        args = (weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            outputs, *final = self._kernel(x, self._hx(state), *args, True)
            return RNNOutput(outputs, self.state_type(*final))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        order, restore = packed.sorted_indices, packed.unsorted_indices
        hx = self._hx(self.state_type(*(f.index_select(1, order) for f in state)))
        data, *final = self._kernel(packed.data, packed.batch_sizes, hx, *args)
        packed_out = PackedSequence(data, packed.batch_sizes, order, restore)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return RNNOutput(outputs, self.state_type(*(f.index_select(1, restore) for f in final)))

    def _hx(self, state: NamedTuple):
        return state.h.contiguous()

    def extra_repr(self) -> str:
        cell = self.cells[0]
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        parts += [
            f"{k}={v!r}" for k, v in (("bidirectional", self.bidirectional), ("dropout", self.dropout)) if v
        ]
        parts += [o for o in cell.extra_repr().split(", ")[2:] if o]
        return ", ".join([*parts, f"path={self.path!r}"])


def _rename_to_torch(module: _TorchLikeRNN, state_dict: dict, prefix: str, local_metadata) -> None:
    for torch_key, internal in module._torch_names.items():
        state_dict[prefix + torch_key] = state_dict.pop(f"{prefix}stack.{internal}")


def _rename_from_torch(
    module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
) -> None:
    for torch_key, internal in module._torch_names.items():
        if prefix + torch_key in state_dict:
            state_dict[f"{prefix}stack.{internal}"] = state_dict.pop(prefix + torch_key)


def _base_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A subclass __init__'s locals() -> the arguments of _TorchLikeRNN.__init__, by name."""
    return {name: arguments[name] for name in list(inspect.signature(_TorchLikeRNN.__init__).parameters)[1:]}


# Docstring blocks RNN, GRU and LSTM share: _shared_docs fills them into each class's %(...)s fields.
_SHARED_DOCS = {
    "where": """x_t is the layer's input (the input for layer 0, the outputs of the layer below for the
    others); the state at t = 0 is zeros, learned vectors or the state passed in.""",
    "args": """input_size: D, features per step of the input.
        hidden_size: H, features in the hidden state (and in each direction's outputs).
        num_layers: L, layers stacked, each reading the outputs of the one below.
        bidirectional: K = 2: every layer also reads each sequence backwards, from its last real
            step to its first; the two directions' outputs are concatenated.
        dropout: on the outputs of every layer but the last, in training (warns with num_layers=1).
        layer_norm: normalise W_i* x_t and W_h* h_(t-1) separately, before the biases (Ba et al. 2016).
        recurrent_dropout: variational dropout on h_(t-1) before W_h*, one mask per sequence, in
            training (Gal & Ghahramani 2016, sec. 4).
        zoneout: probability that a state unit keeps its previous value at a step, in training
            (Krueger et al. 2016); eval mode takes the expectation (1 - p) new + p previous.
        bias: learn b_ih and b_hh.
        init: "default" (torch's: every weight and bias drawn from U(-1/sqrt(H), 1/sqrt(H))),
            "xavier"/"glorot", "he"/"kaiming" (for relu) or "orthogonal" (orthogonal recurrent
            blocks, Glorot input weights); all but "default" start the biases at zero.
        learn_initial_state: learn each layer's and direction's starting state instead of zeros.
        residual: add each layer's input to its output where their sizes agree (Wu et al. 2016).
        path: "auto" calls torch's fused kernel (oneDNN on CPU, cuDNN on GPU) when layer_norm,
            recurrent_dropout, zoneout, learn_initial_state and residual are off, else loops over
            the cells; "cell" always loops; "fused" calls the kernel or raises a ConfigError.""",
    "io": """Inputs: x (B, T, D) in the weights' dtype, state=None, lengths=None
        state: {state_in}, (L*K, B, H) each;
            None: zeros, or the learned initial states.
        lengths: (B,) real steps per sequence, 1 <= length <= T: a list or a tensor on any
            device, in any order. None: every sequence is T steps long.

    Outputs: RNNOutput(outputs, state)
        outputs: (B, T, K*H), the top layer's h_t at every step (with K = 2, the forward
            direction in the first H features); zero at padded steps (t >= length).
        state: {state_out}, (L*K, B, H) each: after each sequence's last real step.""",
    "attributes": """path: "fused" or "cell", the way forward runs (also shown by ``repr(layer)``).
        cells: the L*K cells in the state's row order; state_type; output_size K*H; num_states L*K.""",
    "notes": """- State rows follow torch: layer 0 forward, layer 0 backward, layer 1 forward, ...;
          ``state.h.view(L, K, B, H)`` separates them, ``state.h[-K:]`` is the top layer.
        - The backward direction ends at step 0: the top layer's final h (``state.h[-1]``) is
          ``outputs[:, 0, H:]``, not ``outputs[:, -1, H:]`` (without ``residual``); the forward
          one's is ``outputs[b, lengths[b] - 1, :H]``, and ``outputs[:, -1]`` is zero for every
          sequence shorter than T: take the last outputs from the state.
        - Padded steps never change the state; the backward direction starts at each sequence's
          own last real step (no sorting, no PackedSequence).
        - Both paths give the same numbers; state_dict keys are torch.nn's (``weight_ih_l0``,
          ``bias_hh_l1_reverse``, ...), so weights load both ways.""",
}


def _shared_docs(state_in: str, state_out: str):
    def fill(cls: type) -> type:
        blocks = {k: v.format(state_in=state_in, state_out=state_out) for k, v in _SHARED_DOCS.items()}
        cls.__doc__ %= blocks
        return cls

    return fill


@_shared_docs("``RNNState(h_0)`` or a bare tensor h_0", "``RNNState(h_n)``")
class RNN(_TorchLikeRNN):
    """Elman RNN layers (Elman 1990): torch.nn.RNN, batch first, plus the cells' options.

    Each layer computes, at every step t::

        h_t = act(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh)

    with act tanh or relu (``nonlinearity``).
    %(where)s

    Args:
        %(args)s
        nonlinearity: "tanh" or "relu" (also an attribute).

    %(io)s

    Attributes:
        weight_ih_l{k}: (H, D) for k = 0, (H, K*H) above; weight_hh_l{k}: (H, H); bias_ih_l{k},
            bias_hh_l{k}: (H,); a ``_reverse`` suffix for the backward direction.
        %(attributes)s

    Notes:
        %(notes)s

    Example:
        >>> rnn = rnnkit.RNN(8, 32, num_layers=2, nonlinearity="relu")
        >>> out = rnn(torch.randn(4, 10, 8), lengths=[10, 7, 3, 1])
        >>> out.outputs.shape, out.state.h.shape    # (4, 10, 32), (2, 4, 32)
    """

    cell_class = RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        nonlinearity: str = "tanh",
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        bias: bool = True,
        init: str = "default",
        learn_initial_state: bool = False,
        residual: bool = False,
        path: str = "auto",
    ) -> None:
        self.nonlinearity = nonlinearity  # before the base builds the cells, which read it
        super().__init__(**_base_arguments(locals()))

    def _cell_options(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity}

    @property
    def _kernel(self):
        return torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu


@_shared_docs("``RNNState(h_0)`` or a bare tensor h_0", "``RNNState(h_n)``")
class GRU(_TorchLikeRNN):
    """GRU layers (Cho et al. 2014): torch.nn.GRU, batch first, plus the cells' options.

    Each layer computes, at every step t::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_(t-1)

    %(where)s
    As in torch and cuDNN, r_t multiplies W_hn h_(t-1) + b_hn, not h_(t-1) (the paper's).

    Args:
        %(args)s

    %(io)s

    Attributes:
        weight_ih_l{k}: (3H, D) for k = 0, (3H, K*H) above, gates (r, z, n) stacked;
            weight_hh_l{k}: (3H, H); bias_ih_l{k}, bias_hh_l{k}: (3H,); ``_reverse`` for backward.
        %(attributes)s

    Notes:
        %(notes)s

    Example:
        >>> gru = rnnkit.GRU(8, 32, num_layers=2, bidirectional=True)
        >>> out = gru(torch.randn(4, 10, 8), lengths=[10, 7, 3, 1])
        >>> out.outputs.shape, out.state.h.shape        # (4, 10, 64), (4, 4, 32)
        >>> out = gru(torch.randn(4, 5, 8), out.state)  # the next chunk of the same streams
    """

    cell_class = GRUCell
    _kernel = staticmethod(torch.gru)


@_shared_docs("``LSTMState(h_0, c_0)`` or torch's tuple ``(h_0, c_0)``", "``LSTMState(h_n, c_n)``")
class LSTM(_TorchLikeRNN):
    """LSTM layers (Hochreiter & Schmidhuber 1997): torch.nn.LSTM, batch first, plus the cells' options.

    Each layer computes, at every step t::

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_(t-1) + b_hi)
        f_t = sigmoid(W_if x_t + b_if + W_hf h_(t-1) + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_(t-1) + b_hg)
        o_t = sigmoid(W_io x_t + b_io + W_ho h_(t-1) + b_ho)
        c_t = f_t * c_(t-1) + i_t * g_t
        h_t = o_t * tanh(c_t)

    %(where)s
    With ``layer_norm`` the output reads tanh(LN(c_t)) (Ba et al. 2016, eq. 22).

    Args:
        %(args)s
        forget_bias: b_if's starting value, with b_hf at 0, whatever ``init`` drew (Jozefowicz et al.
            2015 advise 1); None keeps ``init``'s draw. So the default 1.0 makes rnnkit's LSTM start
            differently from torch.nn.LSTM, even with ``init="default"`` (every other parameter is
            drawn alike); ``forget_bias=None, init="default"`` is torch's initialisation exactly
            (same seed, same parameters), and ``forget_bias=0.0`` is not (it zeroes b_if and b_hf).

    %(io)s

    Attributes:
        weight_ih_l{k}: (4H, D) for k = 0, (4H, K*H) above, gates (i, f, g, o) stacked;
            weight_hh_l{k}: (4H, H); bias_ih_l{k}, bias_hh_l{k}: (4H,); ``_reverse`` for backward.
        %(attributes)s

    Notes:
        %(notes)s

    Example:
        >>> lstm = rnnkit.LSTM(8, 32, num_layers=2, bidirectional=True, layer_norm=True)
        >>> lstm.path                                   # "cell": layer norm has no fused kernel
        >>> out = lstm(torch.randn(4, 10, 8))
        >>> out.state.h.shape, out.state.c.shape        # (4, 4, 32) each: 2 layers x 2 directions
    """

    cell_class = LSTMCell
    _kernel = staticmethod(torch.lstm)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        forget_bias: float | None = 1.0,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        bias: bool = True,
        init: str = "default",
        learn_initial_state: bool = False,
        residual: bool = False,
        path: str = "auto",
    ) -> None:
        self.forget_bias = forget_bias  # before the base builds the cells, which read it
        super().__init__(**_base_arguments(locals()))

    def _cell_options(self) -> dict[str, Any]:
        return {"forget_bias": self.forget_bias}

    def _hx(self, state: NamedTuple):
        return [state.h.contiguous(), state.c.contiguous()]
