"""Seq2Seq: an attentive recurrent encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015).

    model = build_model({"name": "seq2seq", "source_vocab_size": 40, "target_vocab_size": 50})
    out = model(source, lengths, targets)        # logits (B, T, V), attention (B, T, S)
    loss, _ = model.loss(source, targets, lengths)   # mean CE over the real target tokens
    memory = model.encode(source, lengths)       # then, one token at a time:
    logits, state, weights = model.decode_step(tokens, memory.state, memory)

Each decoder step (Luong et al. 2015, sec. 3 and 3.3), from the previous token y_(t-1) (bos at t = 0):

    x_t = [embed(y_(t-1)); a_(t-1)]              input feeding: a_(t-1) the last attentional vector
    h_t = decoder cells(x_t, state)              the top layer's output
    c_t, weights_t = attention(h_t, encoder outputs)   over the real source steps
    a_t = tanh(W_c [c_t; h_t])                   eq. 5
    logits_t = W_s dropout(a_t)                  eq. 6

With ``attention="none"`` a_t is h_t and nothing is fed back: the bridge carries the whole source.
Targets end with ``eos_id`` and are padded with -100 (IGNORE) after it. Shape letters as in
:mod:`rnnkit`, plus S source steps, F = K*H the encoder's output features, E = embedding_dim.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from rnnkit.checks import check_lengths
from rnnkit.errors import DataError, ShapeError
from rnnkit.functional.masking import lengths_to_mask
from rnnkit.layers.attention import build_attention
from rnnkit.models.encoder import EncoderConfig, build_encoder, check_tokens
from rnnkit.models.registry import register_model

IGNORE = -100  # the target cross_entropy skips
SCHEDULE_KEYS = {  # the sampling_* keys each schedule reads
    "constant": (),
    "linear": ("sampling_k", "sampling_c", "sampling_min"),
    "exponential": ("sampling_k",),
    "inverse_sigmoid": ("sampling_k",),
}


class Seq2SeqConfig(EncoderConfig):
    """What a :class:`Seq2Seq` is built from; the encoder keys are those of :class:`EncoderConfig`.

    The decoder has ``decoder_layers`` (None: ``num_layers``) unidirectional layers of the same
    ``cell``, ``hidden_size`` wide, with ``dropout`` between them. ``bridge="linear"``: each field
    of the decoder's initial state (h, and c for an LSTM) is tanh(W [encoder's top-layer final
    states of both directions]), one map for all decoder layers; "zeros" starts from zeros.

    Teacher forcing (training only; eval mode always feeds the gold token): at each step each example
    is fed the gold previous token with probability eps_i, else the model's own argmax, where i counts
    the training batches seen (a buffer saved with the weights). ``sampling_schedule`` picks eps_i
    (Bengio et al. 2015, sec. 2.4): "constant": ``teacher_forcing``; "linear": min(1, max(
    sampling_min, k - c i)); "exponential": k^i with 0 < k < 1; "inverse_sigmoid": k / (k + exp(i / k))
    with k >= 1, where k is ``sampling_k`` and c ``sampling_c``. A schedule sets the ratio itself, so
    ``teacher_forcing`` must then stay 1.0, and a sampling_* key a schedule does not read is refused.

    ``embedding_dropout`` acts on the embedded tokens of both sides, ``output_dropout`` on the
    attentional vector before the output projection; ``input_feeding`` applies with an attention only.
    ``pad_id``, ``bos_id``, ``eos_id`` are the ids :class:`rnnkit.data.Vocab` gives its specials.
    """

    name: Literal["seq2seq"] = "seq2seq"
    source_vocab_size: int = Field(gt=0)
    target_vocab_size: int = Field(gt=0)
    embedding_dim: int = Field(64, gt=0)
    decoder_layers: int | None = Field(None, gt=0)
    attention: Literal["additive", "dot", "general", "concat", "none"] = "additive"
    input_feeding: bool = True
    bridge: Literal["linear", "zeros"] = "linear"
    teacher_forcing: float = Field(1.0, ge=0, le=1)
    sampling_schedule: Literal["constant", "linear", "exponential", "inverse_sigmoid"] = "constant"
    sampling_k: float | None = Field(None, gt=0)
    sampling_c: float | None = Field(None, gt=0)
    sampling_min: float | None = Field(None, ge=0, le=1)
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    output_dropout: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    pad_id: int = Field(0, ge=0)
    bos_id: int = Field(2, ge=0)
    eos_id: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _options_fit_together(self) -> Seq2SeqConfig:
        if self.attention == "dot" and self.bidirectional:
            raise ValueError(
                "attention='dot' scores h . encoder output, which needs equal sizes, and bidirectional "
                "outputs are 2 * hidden_size wide: use attention='general' or bidirectional=False"
            )
        if self.attention == "none" and self.bridge == "zeros":
            raise ValueError(
                "attention='none' with bridge='zeros' leaves the decoder blind to the source: use "
                "bridge='linear' or an attention"
            )
        for name in ("bos_id", "eos_id", "pad_id"):
            if getattr(self, name) >= self.target_vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} must be below target_vocab_size")
        self._check_schedule()
        return self

    def _check_schedule(self) -> None:
        schedule, used = self.sampling_schedule, SCHEDULE_KEYS[self.sampling_schedule]
        if schedule != "constant" and self.teacher_forcing != 1.0:
            raise ValueError(
                f"sampling_schedule={schedule!r} sets the teacher-forcing ratio itself: drop "
                "teacher_forcing (it is the ratio of the 'constant' schedule)"
            )
        for key in ("sampling_k", "sampling_c", "sampling_min"):
            if getattr(self, key) is not None and key not in used:
                raise ValueError(f"{key} does not apply to sampling_schedule={schedule!r}: drop it")
        needed = [key for key in used[:2] if getattr(self, key) is None]
        if needed:
            raise ValueError(f"sampling_schedule={schedule!r} needs {' and '.join(needed)} (see the docs)")
        k = self.sampling_k
        if schedule == "exponential" and k >= 1:
            raise ValueError(f"sampling_k is the decay k^i of the exponential schedule: need k < 1, got {k}")
        if schedule == "inverse_sigmoid" and k < 1:
            raise ValueError(
                f"sampling_k of the inverse_sigmoid schedule k/(k+exp(i/k)) must be >= 1, got {k}"
            )

    def ratio(self, step: int) -> float:
        """The teacher-forcing ratio eps_i after ``step`` training batches (class docs)."""
        k, i = self.sampling_k, step
        if self.sampling_schedule == "linear":
            return min(1.0, max(self.sampling_min or 0.0, k - self.sampling_c * i))
        if self.sampling_schedule == "exponential":
            return k**i
        if self.sampling_schedule == "inverse_sigmoid":
            return k / (k + math.exp(min(i / k, 700.0)))  # exp(700) is near float64's limit
        return self.teacher_forcing


class Seq2SeqOutput(NamedTuple):
    """logits (B, T, V) over the target vocabulary; attention weights (B, T, S), or None without."""

    logits: Tensor
    attention: Tensor | None


class DecoderState(NamedTuple):
    """rnn: the decoder cells' state, fields (L, B, H), batch along dim 1; feed: the last attentional
    vector (B, H) (zeros before the first step), or None without input feeding."""

    rnn: NamedTuple
    feed: Tensor | None

    def select(self, index: Tensor) -> DecoderState:
        """The rows ``index`` (N,) of the batch, in that order (beam search reorders and expands so)."""
        rnn = type(self.rnn)(*(f.index_select(1, index) for f in self.rnn))  # (L, N, H)
        return DecoderState(rnn, None if self.feed is None else self.feed.index_select(0, index))


class Memory(NamedTuple):
    """What :meth:`Seq2Seq.encode` gives the decoder, batch along dim 0 (state: see DecoderState).

    outputs (B, S, F), mask (B, S) True on real source steps, keys: the attention's prepared keys
    (B, S, *) or None without attention, state: the decoder's initial DecoderState.
    """

    outputs: Tensor
    mask: Tensor
    keys: Tensor | None
    state: DecoderState

    def select(self, index: Tensor) -> Memory:
        """The rows ``index`` (N,) of the batch, in that order."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        pick = (self.outputs.index_select(0, index), self.mask.index_select(0, index))
        return Memory(*pick, keys, self.state.select(index))


@register_model("seq2seq", Seq2SeqConfig)
class Seq2Seq(nn.Module):
    """Source ids -> target logits, decoding with teacher forcing or scheduled sampling (module docs).

    Example:
        >>> model = Seq2Seq(Seq2SeqConfig(source_vocab_size=8, target_vocab_size=8, hidden_size=32))
        >>> out = model(torch.randint(4, 8, (2, 5)), [5, 3], torch.tensor([[5, 6, 3], [7, 3, -100]]))
        >>> out.logits.shape, out.attention.shape     # (2, 3, 8), (2, 3, 5)
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = self.config = config
        E, H, K = c.embedding_dim, c.hidden_size, 2 if c.bidirectional else 1
        L = c.decoder_layers or c.num_layers
        attentive = c.attention != "none"
        self.feeding = attentive and c.input_feeding
        self.source_embedding = nn.Embedding(c.source_vocab_size, E)
        self.target_embedding = nn.Embedding(c.target_vocab_size, E)
        self.embedding_dropout = nn.Dropout(c.embedding_dropout)
        self.encoder = c.encoder(E)
        options = c.cell_options()
        self.decoder = build_encoder(c.cell, E + H * self.feeding, H, L, dropout=c.dropout, **options)
        fields = len(self.decoder.state_type._fields)
        self.bridge = (
            nn.ModuleList(nn.Linear(K * H, L * H) for _ in range(fields)) if c.bridge == "linear" else None
        )
        self.attention = build_attention(c.attention, H, K * H) if attentive else None
        self.combine = nn.Linear(K * H + H, H, bias=False) if attentive else None  # W_c
        self.output_dropout = nn.Dropout(c.output_dropout)
        self.output = nn.Linear(H, c.target_vocab_size)  # W_s
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    def initial_state(self, batch_size: int) -> None:
        """None: a seq2seq model reads each pair whole and carries nothing from batch to batch."""
        return None

    def teacher_forcing_ratio(self) -> float:
        """The probability of feeding the gold token in training now (the config's schedule)."""
        return self.config.ratio(int(self.batches_seen))

    def encode(self, source: Tensor, lengths=None) -> Memory:
        """source (B, S) ids, lengths (B,) or None -> the Memory the decoder reads."""
        c = self.config
        B, S = check_tokens(source, c.source_vocab_size)
        exporting = torch.compiler.is_exporting()  # symbolic lengths under torch.export (rnnkit.export)
        if lengths is not None and not exporting and bool((torch.as_tensor(lengths) == 0).any()):
            raise DataError(
                "a source sequence is empty (length 0): the decoder needs at least one source token; "
                "drop empty pairs from the data"
            )
        lengths = check_lengths(lengths, B, S)
        x = self.embedding_dropout(self.source_embedding(source.long()))  # (B, S, E)
        encoded = self.encoder(x, lengths=lengths)  # outputs (B, S, F); fields (L*K, B, H)
        everywhere = torch.ones(B, S, dtype=torch.bool, device=source.device)
        mask = everywhere if lengths is None else lengths_to_mask(lengths, S, source.device)  # (B, S)
        keys = None if self.attention is None else self.attention.prepare(encoded.outputs)
        return Memory(encoded.outputs, mask, keys, self._bridge(encoded.state, B))

    def decode_step(
        self, tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tokens (B,) the previous ids -> (logits (B, V), the next state, attention weights (B, S) or
        None). Meant for eval mode: recurrent dropout, if any, acts only inside :meth:`forward`."""
        return self._step(tokens, state, memory, [None] * len(self.decoder.cells))

    def forward(self, source: Tensor, lengths, targets: Tensor) -> Seq2SeqOutput:
        """source (B, S), lengths (B,) or None, targets (B, T) ending with eos, -100 after -> output."""
        c = self.config
        memory = self.encode(source, lengths)
        gold = self._check_targets(targets, source.shape[0])  # (B, T), pad_id where -100
        B, T = gold.shape
        ratio = self.teacher_forcing_ratio() if self.training else 1.0
        masks = [getattr(cell, "recurrent_dropout_mask", lambda _: None)(B) for cell in self.decoder.cells]
        tokens, state, logits, weights = gold.new_full((B,), c.bos_id), memory.state, [], []
        for t in range(T):
            if t > 0 and ratio < 1:
                predicted = logits[-1].detach().argmax(-1)  # (B,)
                forced = torch.rand(B, device=gold.device) < ratio  # (B,)
                tokens = torch.where(forced, gold[:, t - 1], predicted)
            elif t > 0:
                tokens = gold[:, t - 1]
            step_logits, state, step_weights = self._step(tokens, state, memory, masks)
            logits.append(step_logits)
            weights.append(step_weights)
        attention = None if self.attention is None else torch.stack(weights, 1)  # (B, T, S)
        return Seq2SeqOutput(torch.stack(logits, 1), attention)  # (B, T, V)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None) -> tuple[Tensor, None]:
        """Mean cross-entropy (nats, label-smoothed) over the real target tokens, and None.

        inputs: source (B, S); targets (B, T) as in :meth:`forward`; ``state`` is unused (None). In
        training mode each call counts one batch for the sampling schedule.
        """
        logits = self(inputs, lengths, targets).logits  # (B, T, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            targets.long().flatten(),
            ignore_index=IGNORE,
            label_smoothing=self.config.label_smoothing,
        )
        if self.training:
            self.batches_seen += 1
        return loss, None

    def _step(
        self, tokens: Tensor, state: DecoderState, memory: Memory, masks: list[Tensor | None]
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoder step (module docs); masks: each cell's recurrent-dropout mask (B, H) or None."""
        x = self.embedding_dropout(self.target_embedding(tokens))  # (B, E)
        if state.feed is not None:
            x = torch.cat([x, state.feed], -1)  # (B, E + H)
        layers = []
        for i, cell in enumerate(self.decoder.cells):
            if i > 0:
                x = F.dropout(x, self.decoder.dropout, self.training)
            layer_state = type(state.rnn)(*(f[i] for f in state.rnn))  # fields (B, H)
            if hasattr(cell, "recurrence"):  # one recurrent-dropout mask for the whole sequence
                x, layer_state = cell.recurrence(cell.input_projection(x), layer_state, masks[i])
            else:
                x, layer_state = cell(x, layer_state)  # (B, H)
            layers.append(layer_state)
        rnn = type(state.rnn)(*(torch.stack(f) for f in zip(*layers, strict=True)))  # fields (L, B, H)
        if self.attention is None:
            return self.output(self.output_dropout(x)), DecoderState(rnn, None), None
        context, weights = self.attention(x, memory.outputs, memory.mask, prepared=memory.keys)  # (B, F)
        attentional = torch.tanh(self.combine(torch.cat([context, x], -1)))  # (B, H)
        feed = attentional if self.feeding else None
        return self.output(self.output_dropout(attentional)), DecoderState(rnn, feed), weights

    def _bridge(self, encoder_state: NamedTuple, batch_size: int) -> DecoderState:
        c, K = self.config, 2 if self.config.bidirectional else 1
        feed = self.output.weight.new_zeros(batch_size, c.hidden_size) if self.feeding else None
        if self.bridge is None:
            return DecoderState(self.decoder.initial_state(batch_size), feed)
        L = len(self.decoder.cells)
        fields = []
        for field, linear in zip(encoder_state, self.bridge, strict=True):
            top = field[-K:].transpose(0, 1).flatten(1)  # (B, K*H): the top layer's directions
            start = torch.tanh(linear(top)).view(batch_size, L, c.hidden_size)  # (B, L, H)
            fields.append(start.transpose(0, 1).contiguous())  # (L, B, H)
        return DecoderState(self.decoder.state_type(*fields), feed)

    def _check_targets(self, targets, batch_size: int) -> Tensor:
        """targets (B, T) ids in [0, V) or -100 -> the ids with -100 read as pad_id (never scored)."""
        if not isinstance(targets, Tensor) or targets.dim() != 2 or targets.shape[0] != batch_size:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ShapeError(f"targets must be (B, T) with B = {batch_size} (the source's), got {got}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ShapeError(f"targets must be integer token ids (torch.long), got dtype {targets.dtype}")
        if targets.shape[1] == 0:
            raise ShapeError("targets have no steps: every target holds at least its eos_id")
        V = self.config.target_vocab_size
        real = targets != IGNORE  # (B, T)
        bad = real & ((targets < 0) | (targets >= V))
        if bool(bad.any()):
            raise DataError(
                f"target ids must lie in [0, {V}) (target_vocab_size), or be -100 after the end; got "
                f"{targets[bad][:5].tolist()}: encode with the vocabulary the model was built for"
            )
        if not bool(real.any(1).all()):
            raise DataError("a target is all padding (-100): every target holds at least its eos_id")
        return targets.long().masked_fill(~real, self.config.pad_id)
