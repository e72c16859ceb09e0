"""What the task models share: the encoder's config keys, the encoder built from them, token checks, pooling.

    encoder = build_encoder("lstm", 128, 64, num_layers=2, bidirectional=True, dropout=0.3)
    encoder = EncoderConfig(hidden_size=64, num_layers=2).encoder(128)   # the same, from a config
    out = encoder(x, lengths=lengths)                  # x (B, T, 128) -> outputs (B, T, 2 * 64)
    last = final_states(out.state, num_directions=2)   # (B, 2 * 64): each direction's final h
    pooled, weights = Pooling("attention", 128)(out, mask)   # (B, 128), weights (B, T)
    groups = group_parameters([[embedding], *([layer] for layer in encoder_layers(encoder)), [head]])

Cells: "rnn", "lstm", "gru" (:class:`rnnkit.RNN` and friends, with layer norm, recurrent dropout,
zoneout and initialisers), "mingru", "minlstm" (:class:`rnnkit.MinGRU`, :class:`rnnkit.MinLSTM`,
which have none of those options), "ntm" (:class:`rnnkit.layers.NTMEncoder`, a Neural Turing
Machine per layer) and "dnc" (:class:`rnnkit.layers.DNCEncoder`, a Differentiable Neural Computer per
layer): forward only, their memory set by the keys of :class:`MemoryEncoderConfig`; none of those
options either.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator
from torch import Tensor, nn

from rnnkit.cells.init import check_init
from rnnkit.config import Config
from rnnkit.errors import ConfigError, DataError, ShapeError, unknown_name
from rnnkit.layers import GRU, LSTM, RNN, DNCEncoder, MinGRU, MinLSTM, NTMEncoder, RNNOutput

CELLS = {
    "rnn": RNN,
    "lstm": LSTM,
    "gru": GRU,
    "mingru": MinGRU,
    "minlstm": MinLSTM,
    "ntm": NTMEncoder,
    "dnc": DNCEncoder,
}
MINIMAL = ("mingru", "minlstm")
MEMORY_CELLS = ("ntm", "dnc")
# cell="ntm": each layer's memory, as the NTM paper's copy task (Graves et al. 2014, sec. 4.1)
MEMORY = {"memory_rows": 128, "memory_width": 20, "read_heads": 1, "write_heads": 1, "shift_range": 1}
DNC_MEMORY = ("memory_rows", "memory_width", "read_heads")  # cell="dnc": one write head, no shifts
POOLINGS = ("last", "mean", "max", "attention", "concat")


def check_encoder_options(
    cell: str,
    *,
    nonlinearity: str = "tanh",
    layer_norm: bool = False,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    init: str = "default",
) -> None:
    """A ConfigError (a ValueError, so configs report it by key) for options the cell does not take."""
    if cell not in CELLS:
        raise unknown_name("cell", cell, CELLS)
    check_init(init)
    if nonlinearity != "tanh" and cell != "rnn":
        raise ConfigError(
            f"nonlinearity={nonlinearity!r} applies to cell='rnn' only, got cell={cell!r}: "
            "drop nonlinearity or set cell='rnn'"
        )
    if cell not in MINIMAL and cell not in MEMORY_CELLS:
        return
    given = {"layer_norm": layer_norm, "recurrent_dropout": recurrent_dropout, "zoneout": zoneout}
    given["init"] = init if init != "default" else None
    unused = [name for name, value in given.items() if value]
    if not unused:
        return
    them = "them" if len(unused) > 1 else "it"
    if cell in MEMORY_CELLS:
        raise ConfigError(
            f"cell={cell!r} (an LSTM controller with its own initialisation) takes no {', '.join(unused)}: "
            f"drop {them}, or use cell='lstm' for those options"
        )
    raise ConfigError(
        f"cell={cell!r} has no recurrent weights and takes no {', '.join(unused)}: drop "
        f"{them} or use cell='lstm' or 'gru'"
    )


def build_encoder(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    *,
    dropout: float = 0.0,
    nonlinearity: str = "tanh",
    layer_norm: bool = False,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    init: str = "default",
    memory: dict[str, int] | None = None,
) -> nn.Module:
    """The recurrent layers named by ``cell``: forward(x (B, T, D), state, lengths) -> RNNOutput.

    ``dropout`` acts between stacked layers; with ``num_layers == 1`` there is none and it is ignored
    (task configs carry a default for it, so a warning there would only be noise). ``memory`` sets
    cell="ntm"'s keys of :data:`MEMORY` (the others at their defaults), or cell="dnc"'s
    (:data:`DNC_MEMORY`; write_heads and shift_range away from 1 are refused), and is refused for
    other cells.
    """
    check_encoder_options(
        cell,
        nonlinearity=nonlinearity,
        layer_norm=layer_norm,
        recurrent_dropout=recurrent_dropout,
        zoneout=zoneout,
        init=init,
    )
    options = {"dropout": dropout} if num_layers > 1 else {}
    if cell in MEMORY_CELLS:
        memory = _memory(cell, memory)
        return CELLS[cell](input_size, hidden_size, num_layers, bidirectional, **options, **memory)
    if memory:
        raise ConfigError(
            f"memory={memory} applies to cell='ntm' or 'dnc' only, got cell={cell!r}: drop memory"
        )
    if cell not in MINIMAL:
        options |= dict(
            layer_norm=layer_norm, recurrent_dropout=recurrent_dropout, zoneout=zoneout, init=init
        )
    if cell == "rnn":
        options["nonlinearity"] = nonlinearity
    return CELLS[cell](input_size, hidden_size, num_layers, bidirectional, **options)


def _memory(cell: str, memory: dict[str, int] | None) -> dict[str, int]:
    """The memory keys ``cell`` ("ntm" or "dnc") takes: those given, the others at their defaults."""
    memory = memory or {}
    unknown = sorted(set(memory) - set(MEMORY))
    if unknown:
        raise unknown_name("memory key", unknown[0], MEMORY)
    if cell == "ntm":
        return MEMORY | memory
    _check_dnc_memory(memory)
    return {key: memory.get(key, MEMORY[key]) for key in DNC_MEMORY}


def _check_dnc_memory(memory: dict[str, int]) -> None:
    """A ConfigError for the NTM's head keys (write_heads, shift_range) away from 1 on cell="dnc".

    At 1 they are what a DNC has (one write head) or ignored (no shifts): configs dump every key, so a
    saved DNC config carries them at their defaults."""
    given = [f"{key}={memory[key]}" for key in ("write_heads", "shift_range") if memory.get(key, 1) != 1]
    if given:
        raise ConfigError(
            "cell='dnc' has one write head and no head shifts (it finds rows by content, allocation "
            f"and temporal links), got {', '.join(given)}: drop {'them' if len(given) > 1 else 'it'}, "
            "or use cell='ntm'"
        )


class RecurrentConfig(Config):
    """The recurrent layers every task model has: ``num_layers`` of one ``cell``, ``hidden_size`` wide.

    Task configs inherit these keys, so they stay flat in YAML (``model: {cell: gru, hidden_size:
    64}``); a task narrows a default, or the cells it takes, by declaring the field again.
    ``layer_norm`` and ``init`` apply to the rnn, lstm and gru cells; the minimal cells (mingru,
    minlstm) have no recurrent weights and refuse them.
    """

    cell: Literal["rnn", "lstm", "gru", "mingru", "minlstm"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    layer_norm: bool = False
    init: str = "default"

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        return check_init(value)

    @model_validator(mode="after")
    def _cell_takes_options(self) -> RecurrentConfig:
        check_encoder_options(self.cell, **self.cell_options())
        return self

    def cell_options(self) -> dict[str, Any]:
        """The options of :func:`build_encoder` that this config holds, and that the cell must take."""
        return {"layer_norm": self.layer_norm, "init": self.init}

    @model_serializer(mode="wrap")
    def _name_first(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A task config's ``name`` leads its dump (config.yaml), before these inherited keys."""
        data = handler(self)
        if isinstance(data, dict) and "name" in data:
            data = {"name": data.pop("name")} | data
        return data


class EncoderConfig(RecurrentConfig):
    """:class:`RecurrentConfig` plus direction and the regularisers of a free-standing encoder.

    ``dropout`` acts between stacked layers and is ignored when ``num_layers == 1`` (use
    ``recurrent_dropout`` or ``zoneout`` there); ``nonlinearity`` applies to ``cell="rnn"`` only;
    ``recurrent_dropout`` and ``zoneout`` to the rnn, lstm and gru cells.
    """

    bidirectional: bool = False
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    dropout: float = Field(0.0, ge=0, lt=1)
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)
    zoneout: float = Field(0.0, ge=0, lt=1)

    def cell_options(self) -> dict[str, Any]:
        options = super().cell_options()
        return options | {
            "nonlinearity": self.nonlinearity,
            "recurrent_dropout": self.recurrent_dropout,
            "zoneout": self.zoneout,
        }

    def encoder(self, input_size: int, bidirectional: bool | None = None) -> nn.Module:
        """The recurrent layers these keys name, reading ``input_size`` features (D) a step.

        ``bidirectional`` None follows the config (a seq2seq decoder passes False).
        """
        return build_encoder(
            self.cell,
            input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional if bidirectional is None else bidirectional,
            dropout=self.dropout,
            memory=self.memory(),
            **self.cell_options(),
        )

    def memory(self) -> dict[str, int] | None:
        """The keys of an NTM's or a DNC's memory (:class:`MemoryEncoderConfig`); None: no memory."""
        return None


class MemoryEncoderConfig(EncoderConfig):
    """:class:`EncoderConfig` that also takes ``cell: ntm`` and ``cell: dnc``, with the keys of each
    layer's memory.

    ``memory_rows`` (N) rows of ``memory_width`` (M) entries, ``read_heads``, ``write_heads`` and
    ``shift_range`` (the largest head shift, in rows) default to the NTM paper's copy task: 128 x 20,
    one head of each, shift 1. They apply to cell="ntm" and cell="dnc" only; a DNC has one write
    head and no shifts, and refuses write_heads and shift_range away from 1. Both refuse
    ``bidirectional``, ``layer_norm``, ``recurrent_dropout``, ``zoneout`` and ``init``. (EncoderConfig
    itself keeps its keys, so the configs saved by every other model read and dump as before.)
    """

    cell: Literal["rnn", "lstm", "gru", "mingru", "minlstm", "ntm", "dnc"] = "lstm"
    memory_rows: int = Field(MEMORY["memory_rows"], gt=0, description="N, rows of each NTM or DNC memory")
    memory_width: int = Field(MEMORY["memory_width"], gt=0, description="M, entries per memory row")
    read_heads: int = Field(MEMORY["read_heads"], gt=0)
    write_heads: int = Field(MEMORY["write_heads"], gt=0, description="NTM only; a DNC has one")
    shift_range: int = Field(MEMORY["shift_range"], ge=0, description="NTM heads shift by -S..S rows a step")

    @model_validator(mode="after")
    def _memory_for_its_cell(self) -> MemoryEncoderConfig:
        if self.cell in MEMORY_CELLS and self.bidirectional:
            raise ValueError(
                f"cell={self.cell!r} cannot run bidirectional: {CELLS[self.cell].bidirectional_fix}"
            )
        changed = [key for key, default in MEMORY.items() if getattr(self, key) != default]
        if self.cell not in MEMORY_CELLS and changed:
            raise ValueError(
                f"{', '.join(changed)} set{'s' * (len(changed) == 1)} the memory of cell='ntm' or 'dnc' "
                f"only, got cell={self.cell!r}: drop {'them' if len(changed) > 1 else 'it'} or set cell: "
                "ntm or dnc"
            )
        if self.cell == "dnc":
            _check_dnc_memory({key: getattr(self, key) for key in MEMORY})
        return self

    def memory(self) -> dict[str, int] | None:
        if self.cell not in MEMORY_CELLS:
            return None
        return {key: getattr(self, key) for key in (MEMORY if self.cell == "ntm" else DNC_MEMORY)}


def final_states(state: NamedTuple, num_directions: int) -> Tensor:
    """The top layer's final h of each direction, side by side: fields (L*K, B, H) -> (B, K*H).

    Forward: the state after each sequence's last real step; backward: after reading step 0. This
    equals the top layer's outputs [forward at the last real step, backward at step 0].
    """
    top = state.h[-num_directions:]  # (K, B, H)
    return top.transpose(0, 1).flatten(1)  # (B, K*H)


def check_tokens(tokens, vocab_size: int) -> tuple[int, int]:
    """tokens must be a (B, T) integer tensor of ids in [0, vocab_size); returns (B, T)."""
    if not isinstance(tokens, Tensor):
        raise ShapeError(f"tokens must be a torch.Tensor (B, T) of token ids, got {type(tokens).__name__}")
    if tokens.dim() != 2:
        fix = "add a batch dimension with tokens.unsqueeze(0)" if tokens.dim() == 1 else "reshape it"
        raise ShapeError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}: {fix}")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ShapeError(f"tokens must be integer ids (torch.long), got dtype {tokens.dtype}")
    if 0 in tokens.shape:
        raise ShapeError(f"tokens are empty: shape {tuple(tokens.shape)}; every batch needs B >= 1, T >= 1")
    if torch.compiler.is_exporting():  # symbolic ids under torch.export (rnnkit.export)
        return tokens.shape[0], tokens.shape[1]
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise DataError(
            f"token ids must lie in [0, {vocab_size}) (the model's vocab_size); got min {low}, max {high}: "
            "encode with the vocabulary the model was built for"
        )
    return tokens.shape[0], tokens.shape[1]


class AttentionPooling(nn.Module):
    """Additive attention over time (Bahdanau et al. 2015; as word attention in Yang et al. 2016, sec. 2.2).

    u_t = tanh(W h_t + b), a = softmax_t(v . u_t) over the real steps only, pooled = sum_t a_t h_t.
    ``proj`` is W, b (F -> F); ``score`` is v (F -> 1, no bias: a shift cancels in the softmax).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)
        self.score = nn.Linear(size, 1, bias=False)

    def forward(self, outputs: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """outputs (B, T, F), mask (B, T) True on real steps or None -> (pooled (B, F), weights (B, T))."""
        scores = self.score(torch.tanh(self.proj(outputs))).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, -torch.inf)
        weights = torch.softmax(scores, -1)  # (B, T): zero on padding, each row sums to 1
        return torch.einsum("bt,btf->bf", weights, outputs), weights  # (B, F), (B, T)


class Pooling(nn.Module):
    """An encoder's outputs -> one vector per sequence, reading real steps only.

    kinds: "last" (:func:`final_states`), "mean" and "max" over the real steps, "attention"
    (:class:`AttentionPooling`, whose weights are returned; None for the other kinds), and "concat":
    [last, max, mean] side by side, ULMFiT's head input (Howard & Ruder 2018, sec. 3.3).

    Attributes: size: the pooled width, F (3F for "concat"), what a head reads.
    """

    def __init__(self, kind: str, size: int, num_directions: int = 1) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise unknown_name("pooling", kind, POOLINGS)
        self.kind, self.num_directions = kind, num_directions
        self.size = 3 * size if kind == "concat" else size
        self.attention = AttentionPooling(size) if kind == "attention" else None

    def forward(self, encoded: RNNOutput, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """encoded outputs (B, T, F), mask (B, T) or None -> (pooled (B, size), weights (B, T) or None)."""
        if self.kind == "attention":
            return self.attention(encoded.outputs, mask)
        if self.kind == "concat":
            parts = [self._pool(kind, encoded, mask) for kind in ("last", "max", "mean")]
            return torch.cat(parts, -1), None  # (B, 3F)
        return self._pool(self.kind, encoded, mask), None

    def _pool(self, kind: str, encoded: RNNOutput, mask: Tensor | None) -> Tensor:
        """One of "last", "mean", "max": (B, F)."""
        outputs = encoded.outputs
        if kind == "last":
            return final_states(encoded.state, self.num_directions)
        if mask is None:
            return outputs.mean(1) if kind == "mean" else outputs.amax(1)
        real = mask.unsqueeze(-1)  # (B, T, 1)
        if kind == "mean":
            total = outputs.masked_fill(~real, 0.0).sum(1)  # (B, F)
            return total / real.sum(1).to(outputs.dtype)
        return outputs.masked_fill(~real, -torch.inf).amax(1)  # (B, F)

    def extra_repr(self) -> str:
        return repr(self.kind)


def encoder_layers(encoder: nn.Module) -> list[nn.Module]:
    """The layers of an encoder from :func:`build_encoder`, bottom to top; a bidirectional layer is
    one module holding both directions."""
    return list(encoder.stack.layers)


def group_parameters(groups: list[list[nn.Module | None]]) -> list[list[nn.Parameter]]:
    """Each group's parameters (groups of modules, bottom to top; None skipped), for a model's
    ``layer_groups()``: a parameter shared by two groups (tied weights) counts in the lower one only,
    and groups left empty are dropped."""
    seen: set[int] = set()
    result = []
    for modules in groups:
        fresh = []
        for p in (p for m in modules if m is not None for p in m.parameters()):
            if id(p) not in seen:
                seen.add(id(p))
                fresh.append(p)
        if fresh:
            result.append(fresh)
    return result
