"""Neural Turing Machine cell (Graves, Wayne & Danihelka 2014): an LSTM controller with an external memory."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import LSTMState
from rnnkit.cells.lstm import LSTMCell
from rnnkit.checks import check_input, check_state
from rnnkit.errors import ConfigError, warn_user
from rnnkit.functional.memory import address, read_memory, write_memory

CLIP = 20.0  # head parameters are clamped to [-CLIP, CLIP], as Collier & Beel's 2018 implementation does
MEMORY_INIT = 1e-6  # every memory entry at the start (Collier & Beel 2018: constant init trains best)


def check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ConfigError(f"{name} must be {kind} int, got {value!r}")


class NTMState(NamedTuple):
    """NTM state, every field flat (B, width) so layers mask and stack it like any state.

    h, c (B, H): the LSTM controller's state; memory (B, N*M): the rows one after another, see them with
    ``memory.view(B, N, M)``; reads (B, R*M): the last read vectors; read_weights (B, R*N) and
    write_weights (B, W*N): each head's last weighting over the rows.
    """

    h: Tensor
    c: Tensor
    memory: Tensor
    reads: Tensor
    read_weights: Tensor
    write_weights: Tensor


class NTMCell(nn.Module):
    """One NTM step: controller, then addressing (content, interpolation, shift, sharpening), read, write.

    (h, c) = LSTM([x_t, r_{t-1}], (h, c));  p = clamp(W_p h + b_p, -20, 20) gives every head its key
    k = tanh(.), strength beta = softplus(.), gate g = sigmoid(.), shift s = softmax(.) over -S..S and
    sharpening gamma = 1 + softplus(.), and every write head its erase e = sigmoid(.) and add a = tanh(.);
    w = address(M_{t-1}, w_{t-1}, k, beta, g, s, gamma) (sec. 3.3); r_t = w_read M_{t-1} (eq. 2);
    M_t = write(M_{t-1}, w_write, e, a) (eq. 3-4);  y_t = W_y [h, r_t] + b_y.

    The output is projected back to ``hidden_size``, so y_t (B, H) and ``state_size == hidden_size``
    as for every other cell: Recurrent, Stacked and Bidirectional size their outputs by it.

    Initial state, as in Collier & Beel 2018 ("Implementing Neural Turing Machines"): controller at
    zero and every memory entry at the constant 1e-6, their best of constant, learned and random
    memory. Every head's weighting starts on row 0: rows of a constant memory are all alike, so from
    a uniform weighting neither content, shift nor sharpening could ever single a row out, while a
    focused start gives the location-based heads (shift) a definite position. The first reads are
    what those weightings read: 1e-6.

    Args:
        input_size: D, features per step.
        hidden_size: H, the controller's width and the output's.
        memory_rows: N, rows of the memory.
        memory_width: M, entries per row.
        read_heads: R. write_heads: W.
        shift_range: S, the largest shift in rows; shifts -S..S are allowed.

    Parameters: ``controller`` (an :class:`LSTMCell` of input D + R*M), ``heads`` (Linear H -> every
    head's parameters) and ``output`` (Linear H + R*M -> H). State: :class:`NTMState`.

    Example::

        layer = rnnkit.Recurrent(NTMCell(8, 64, memory_rows=32, memory_width=16))
        out, state = layer(torch.randn(4, 10, 8))  # out (4, 10, 64); state.memory (1, 4, 32 * 16)
    """

    state_type = NTMState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_rows: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
    ) -> None:
        super().__init__()
        sizes = dict(input_size=input_size, hidden_size=hidden_size, memory_rows=memory_rows)
        sizes.update(memory_width=memory_width, read_heads=read_heads, write_heads=write_heads)
        for name, value in sizes.items():
            check_int(name, value, low=1)
        check_int("shift_range", shift_range, low=0)
        if 2 * shift_range + 1 > memory_rows:
            warn_user(
                f"shift_range={shift_range} allows {2 * shift_range + 1} shifts over only {memory_rows} "
                "rows: shifts wrap around and several offsets move to the same row"
            )
        self.input_size, self.hidden_size, self.shift_range = input_size, hidden_size, shift_range
        N, M, R, W = memory_rows, memory_width, read_heads, write_heads
        self.memory_rows, self.memory_width, self.read_heads, self.write_heads = N, M, R, W
        self.controller = LSTMCell(input_size + R * M, hidden_size)
        self.heads = nn.Linear(hidden_size, (R + W) * self._address_size + W * 2 * M)
        self.output = nn.Linear(hidden_size + R * M, hidden_size)

    @property
    def _address_size(self) -> int:
        """Parameters of one head's addressing: key M, beta, g, gamma and 2S + 1 shift logits."""
        return self.memory_width + 3 + 2 * self.shift_range + 1

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def state_widths(self) -> NTMState:
        """Each state field's width: an NTMState of ints."""
        H, N, M = self.hidden_size, self.memory_rows, self.memory_width
        return NTMState(H, H, N * M, self.read_heads * M, self.read_heads * N, self.write_heads * N)

    def reset_parameters(self) -> None:
        for module in (self.controller, self.heads, self.output):
            module.reset_parameters()

    def initial_state(self, batch_size: int) -> NTMState:
        """Controller zeros, memory and reads at 1e-6, every weighting one-hot on row 0; fields (B, width)."""
        w, size = self.output.weight, self.state_widths
        row0 = w.new_zeros(self.memory_rows)
        row0[0] = 1.0
        return NTMState(
            w.new_zeros(batch_size, size.h),
            w.new_zeros(batch_size, size.c),
            w.new_full((batch_size, size.memory), MEMORY_INIT),
            w.new_full((batch_size, size.reads), MEMORY_INIT),  # what the one-hot weightings read
            row0.repeat(batch_size, self.read_heads),  # (B, R*N)
            row0.repeat(batch_size, self.write_heads),  # (B, W*N)
        )

    def input_projection(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., 4H): the controller's pre-activation from x, hoisted out of the time loop."""
        return F.linear(x, self.controller.weight_ih[:, : self.input_size], self.controller.bias_ih)

    def recurrent_dropout_mask(self, batch_size: int) -> None:
        """No recurrent dropout: None, for Recurrent's loop."""
        return None

    def recurrence(self, gx: Tensor, state: NTMState, dropout_mask: None = None) -> tuple[Tensor, NTMState]:
        """One step from gx = input_projection(x_t) (B, 4H): returns (y (B, H), new state)."""
        B, N, M, R = gx.shape[0], self.memory_rows, self.memory_width, self.read_heads
        ctrl = self.controller
        gx = gx + F.linear(state.reads, ctrl.weight_ih[:, self.input_size :])  # (B, 4H)
        h, c = ctrl.update(gx, ctrl.hidden_projection(state.h), LSTMState(state.h, state.c))
        params = self.heads(h).clamp(-CLIP, CLIP)  # (B, (R+W)*A + W*2M)
        A = (R + self.write_heads) * self._address_size  # every head's addressing parameters
        w_prev = torch.cat([state.read_weights, state.write_weights], -1).view(B, -1, N)  # (B, R+W, N)
        memory = state.memory.view(B, N, M)
        w = address(memory, w_prev, *self._addressing(params[:, :A]))  # (B, R+W, N)
        w_read, w_write = w.split([R, self.write_heads], dim=1)  # (B, R, N), (B, W, N)
        erase, add = params[:, A:].view(B, -1, 2 * M).chunk(2, -1)  # each (B, W, M)
        reads = read_memory(memory, w_read).flatten(1)  # (B, R*M), read before this step's write
        memory = write_memory(memory, w_write, torch.sigmoid(erase), torch.tanh(add))  # (B, N, M)
        y = self.output(torch.cat([h, reads], -1))  # (B, H)
        return y, NTMState(h, c, memory.flatten(1), reads, w_read.flatten(1), w_write.flatten(1))

    def _addressing(self, params: Tensor) -> tuple[Tensor, ...]:
        """(B, (R+W)*A) -> key (B, R+W, M), beta, g (B, R+W), shift (B, R+W, 2S+1), gamma (B, R+W)."""
        p = params.view(params.shape[0], -1, self._address_size)  # (B, R+W, A)
        key, beta, g, gamma, shift = p.split([self.memory_width, 1, 1, 1, 2 * self.shift_range + 1], -1)
        beta, g, gamma = (t.squeeze(-1) for t in (beta, g, gamma))
        return torch.tanh(key), F.softplus(beta), torch.sigmoid(g), shift.softmax(-1), 1 + F.softplus(gamma)

    def forward(self, x: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        """x (B, D), state fields (B, width) or None -> (y (B, H), new state)."""
        dtype = self.output.weight.dtype
        x = check_input(x, self.input_size, dtype, step=True)
        B = x.shape[0]
        state = self.initial_state(B) if state is None else self._check_state(state, B, dtype)
        return self.recurrence(self.input_projection(x), state)

    def _check_state(self, state, batch_size: int, dtype: torch.dtype) -> NTMState:
        return check_state(state, NTMState, (batch_size, self.hidden_size), dtype, self.state_widths)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, memory_rows={self.memory_rows}, "
            f"memory_width={self.memory_width}, read_heads={self.read_heads}, "
            f"write_heads={self.write_heads}, shift_range={self.shift_range}"
        )
