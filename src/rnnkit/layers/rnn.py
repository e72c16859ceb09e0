"""rnnkit.RNN, LSTM and GRU: drop-in relatives of torch.nn's, with the cells' extra options.

Two paths, one meaning. When every option matches torch's fused kernels (oneDNN on CPU, cuDNN on
GPU) the layer calls them, packing the batch for ``lengths`` itself; otherwise it runs the cells in
a time loop with the input projection hoisted out of it. ``layer.path`` says which ("fused" or
"cell") and so does ``repr(layer)``; ``path="cell"`` forces the loop.
"""

from __future__ import annotations

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
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if path not in PATHS:
            raise unknown_name("path", path, PATHS)
        K = 2 if bidirectional else 1
        options = dict(
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            bias=bias,
            init=init,
            learn_initial_state=learn_initial_state,
            **cell_options,
        )
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
        """x (B, T, D); state fields (L*K, B, H) as torch's h_0/c_0, or None; lengths (B,) or None.

        Returns ``RNNOutput(outputs (B, T, K*H), state)``; the state is ``LSTMState(h, c)`` for an
        LSTM and ``RNNState(h)`` otherwise, each field (L*K, B, H) in torch's order (layer 0
        forward, layer 0 backward, layer 1 forward, ...).
        """
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


class RNN(_TorchLikeRNN):
    """Elman RNN layers, like torch.nn.RNN (batch first) plus the options of :class:`RecurrentCell`.

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
        **options: Any,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bidirectional, dropout, nonlinearity=nonlinearity, **options
        )
        self.nonlinearity = nonlinearity

    @property
    def _kernel(self):
        return torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu


class GRU(_TorchLikeRNN):
    """GRU layers, like torch.nn.GRU (batch first) plus the options of :class:`RecurrentCell`."""

    cell_class = GRUCell
    _kernel = staticmethod(torch.gru)


class LSTM(_TorchLikeRNN):
    """LSTM layers, like torch.nn.LSTM (batch first) plus the options of :class:`LSTMCell`.

    Example:
        >>> lstm = rnnkit.LSTM(8, 32, num_layers=2, bidirectional=True, layer_norm=True)
        >>> lstm.path                                   # "cell": layer norm has no fused kernel
        >>> out = lstm(torch.randn(4, 10, 8))
        >>> out.state.h.shape, out.state.c.shape        # (4, 4, 32) each: 2 layers x 2 directions
    """

    cell_class = LSTMCell
    _kernel = staticmethod(torch.lstm)

    def _hx(self, state: NamedTuple):
        return [state.h.contiguous(), state.c.contiguous()]
