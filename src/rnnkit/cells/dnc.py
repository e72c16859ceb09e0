"""Differentiable Neural Computer cell (Graves et al. 2016, Nature): an LSTM controller with an external
memory addressed by content, by usage-based allocation and by the temporal order of writes."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import LSTMState
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.ntm import CLIP, MEMORY_INIT, check_int
from rnnkit.checks import check_input, check_state
from rnnkit.functional import memory as mem

READ_MODES = 3  # each read head mixes backward, content and forward weightings


class DNCState(NamedTuple):
    """DNC state, every field flat (B, width) so layers mask and stack it like any state.

    h, c (B, H): the LSTM controller's state; memory (B, N*M): the rows one after another, see them with
    ``memory.view(B, N, M)``; usage (B, N) and precedence (B, N); link (B, N*N): the temporal link
    matrix, ``link.view(B, N, N)[b, i, j]`` how much row i was written right after row j; reads
    (B, R*M): the last read vectors; read_weights (B, R*N) and write_weights (B, N): the last weightings.
    """

    h: Tensor
    c: Tensor
    memory: Tensor
    usage: Tensor
    precedence: Tensor
    link: Tensor
    reads: Tensor
    read_weights: Tensor
    write_weights: Tensor


class Interface(NamedTuple):
    """The interface vector xi_t split and put in range (Methods, "Interface parameters")."""

    read_keys: Tensor  # (B, R, M)
    read_strengths: Tensor  # (B, R) >= 1
    write_key: Tensor  # (B, 1, M)
    write_strength: Tensor  # (B, 1) >= 1
    erase: Tensor  # (B, 1, M) in [0, 1]
    write_vector: Tensor  # (B, 1, M)
    free_gates: Tensor  # (B, R) in [0, 1]
    allocation_gate: Tensor  # (B,) in [0, 1]
    write_gate: Tensor  # (B,) in [0, 1]
    read_modes: Tensor  # (B, R, 3): distributions over backward, content, forward


def oneplus(x: Tensor) -> Tensor:
    """oneplus(x) = 1 + log(1 + e^x): the DNC's key strengths, in [1, inf)."""
    return 1 + F.softplus(x)


class DNCCell(nn.Module):
    """One DNC step (Methods): controller, interface, usage, allocation, write, temporal links, read.

    (h, c) = LSTM([x_t, r_{t-1}], (h, c));  xi = clamp(W_xi h + b_xi, -20, 20) gives the read keys k^r,
    strengths beta^r = oneplus(.), write key k^w, strength beta^w = oneplus(.), erase e = sigmoid(.),
    write vector v, free gates f = sigmoid(.), allocation gate g^a and write gate g^w = sigmoid(.) and
    read modes pi = softmax(.) over (backward, content, forward). Keys and v take no squashing, as in
    the paper; the clamp bounds them. Then, with one write head:
    u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) prod_i (1 - f_i w^r_{t-1,i});  a_t = alloc(u_t);
    w^w_t = g^w (g^a a_t + (1 - g^a) C(M_{t-1}, k^w, beta^w));  M_t = M_{t-1} (1 - w^w e^T) + w^w v^T;
    L_t, p_t from w^w_t;  w^r_t = pi_1 L_t^T w^r_{t-1} + pi_2 C(M_t, k^r, beta^r) + pi_3 L_t w^r_{t-1};
    r_t = w^r_t M_t;  y_t = W_y [h, r_t] + b_y (the paper's v_t + W_r r_t). The functions are in
    :mod:`rnnkit.functional.memory`.

    The output is projected back to ``hidden_size``, so y_t (B, H) and ``state_size == hidden_size``
    as for every other cell: Recurrent, Stacked and Bidirectional size their outputs by it.

    Initial state: controller, usage, precedence, links and every weighting at zero, as in the paper
    (nothing written, nothing read, so the first reads are zero too). Memory at the constant 1e-6, as
    :class:`NTMCell` has it (Collier & Beel 2018): it reads as empty, yet no row has the zero norm at
    which the cosine of content addressing has no direction (and its gradient no value); rows that
    are all alike give a uniform content weighting, so the first write goes where allocation sends it.

    Args:
        input_size: D, features per step.
        hidden_size: H, the controller's width and the output's.
        memory_rows: N, rows of the memory.
        memory_width: M, entries per row (the paper's W).
        read_heads: R. There is one write head, as in the paper.

    Parameters: ``controller`` (an :class:`LSTMCell` of input D + R*M), ``interface`` (Linear
    H -> R*M + 3M + 5R + 3, every interface parameter) and ``output`` (Linear H + R*M -> H).
    State: :class:`DNCState`.

    Example::

        layer = rnnkit.Recurrent(DNCCell(8, 64, memory_rows=32, memory_width=16, read_heads=2))
        out, state = layer(torch.randn(4, 10, 8))  # out (4, 10, 64); state.link (1, 4, 32 * 32)
    """

    state_type = DNCState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_rows: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
    ) -> None:
        super().__init__()
        sizes = dict(input_size=input_size, hidden_size=hidden_size, memory_rows=memory_rows)
        sizes.update(memory_width=memory_width, read_heads=read_heads)
        for name, value in sizes.items():
            check_int(name, value, low=1)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.memory_rows, self.memory_width, self.read_heads = memory_rows, memory_width, read_heads
        M, R = memory_width, read_heads
        self.controller = LSTMCell(input_size + R * M, hidden_size)
        self.interface = nn.Linear(hidden_size, sum(self._interface_sizes))
        self.output = nn.Linear(hidden_size + R * M, hidden_size)

    @property
    def _interface_sizes(self) -> list[int]:
        """Widths of xi's parts, in the paper's order (the fields of :class:`Interface`)."""
        M, R = self.memory_width, self.read_heads
        return [R * M, R, M, 1, M, M, R, 1, 1, READ_MODES * R]

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def state_widths(self) -> DNCState:
        """Each state field's width: a DNCState of ints."""
        H, N, M, R = self.hidden_size, self.memory_rows, self.memory_width, self.read_heads
        return DNCState(H, H, N * M, N, N, N * N, R * M, R * N, N)

    def reset_parameters(self) -> None:
        for module in (self.controller, self.interface, self.output):
            module.reset_parameters()

    def initial_state(self, batch_size: int) -> DNCState:
        """Memory at 1e-6, everything else zero; fields (B, width)."""
        w = self.output.weight
        fields = [w.new_zeros(batch_size, width) for width in self.state_widths]
        fields[DNCState._fields.index("memory")].fill_(MEMORY_INIT)
        return DNCState(*fields)

    def input_projection(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., 4H): the controller's pre-activation from x, hoisted out of the time loop."""
        return F.linear(x, self.controller.weight_ih[:, : self.input_size], self.controller.bias_ih)

    def recurrent_dropout_mask(self, batch_size: int) -> None:
        """No recurrent dropout: None, for Recurrent's loop."""
        return None

    def recurrence(self, gx: Tensor, state: DNCState, dropout_mask: None = None) -> tuple[Tensor, DNCState]:
        """One step from gx = input_projection(x_t) (B, 4H): returns (y (B, H), new state)."""
        B, N, M, R = gx.shape[0], self.memory_rows, self.memory_width, self.read_heads
        ctrl = self.controller
        gx = gx + F.linear(state.reads, ctrl.weight_ih[:, self.input_size :])  # (B, 4H)
        h, c = ctrl.update(gx, ctrl.hidden_projection(state.h), LSTMState(state.h, state.c))
        xi = self._interface(h)
        memory, w_read = state.memory.view(B, N, M), state.read_weights.view(B, R, N)  # the last step's
        retention = mem.memory_retention(xi.free_gates, w_read)  # (B, N)
        usage = mem.update_usage(state.usage, state.write_weights, retention)  # (B, N)
        allocation = mem.allocation_weights(usage)  # (B, N)
        content = mem.content_weights(memory, xi.write_key, xi.write_strength)[:, 0]  # (B, N)
        w_write = mem.write_weighting(allocation, content, xi.allocation_gate, xi.write_gate)  # (B, N)
        memory = mem.write_memory(memory, w_write.unsqueeze(1), xi.erase, xi.write_vector)  # (B, N, M)
        link = mem.update_link(state.link.view(B, N, N), w_write, state.precedence)  # (B, N, N)
        precedence = mem.update_precedence(state.precedence, w_write)  # (B, N)
        forward, backward = mem.temporal_weights(link, w_read)  # each (B, R, N)
        content = mem.content_weights(memory, xi.read_keys, xi.read_strengths)  # (B, R, N), the new memory
        w_read = mem.read_weighting(backward, content, forward, xi.read_modes)  # (B, R, N)
        reads = mem.read_memory(memory, w_read).flatten(1)  # (B, R*M)
        y = self.output(torch.cat([h, reads], -1))  # (B, H)
        new = (h, c, memory.flatten(1), usage, precedence, link.flatten(1), reads, w_read.flatten(1), w_write)
        return y, DNCState(*new)

    def _interface(self, h: Tensor) -> Interface:
        """h (B, H) -> the interface parameters, clamped to [-20, 20] and put in range."""
        B, M, R = h.shape[0], self.memory_width, self.read_heads
        xi = self.interface(h).clamp(-CLIP, CLIP)  # (B, R*M + 3M + 5R + 3)
        rk, rs, wk, ws, e, v, f, ga, gw, pi = xi.split(self._interface_sizes, -1)
        return Interface(
            rk.view(B, R, M),
            oneplus(rs),
            wk.unsqueeze(1),  # (B, 1, M)
            oneplus(ws),  # (B, 1)
            torch.sigmoid(e).unsqueeze(1),  # (B, 1, M)
            v.unsqueeze(1),  # (B, 1, M)
            torch.sigmoid(f),
            torch.sigmoid(ga).squeeze(-1),  # (B,)
            torch.sigmoid(gw).squeeze(-1),  # (B,)
            pi.view(B, R, READ_MODES).softmax(-1),
        )

    def forward(self, x: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        """x (B, D), state fields (B, width) or None -> (y (B, H), new state)."""
        dtype = self.output.weight.dtype
        x = check_input(x, self.input_size, dtype, step=True)
        B = x.shape[0]
        state = self.initial_state(B) if state is None else self._check_state(state, B, dtype)
        return self.recurrence(self.input_projection(x), state)

    def _check_state(self, state, batch_size: int, dtype: torch.dtype) -> DNCState:
        return check_state(state, DNCState, (batch_size, self.hidden_size), dtype, self.state_widths)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, memory_rows={self.memory_rows}, "
            f"memory_width={self.memory_width}, read_heads={self.read_heads}"
        )
