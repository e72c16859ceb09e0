"""What each task model's ONNX graphs compute: named inputs and outputs, shapes, dtypes, meaning.

A :class:`Graph` is one ONNX file: ``run(model, *inputs)`` gives its outputs from a model (the
exportable twin when traced, the original when checked), and ``example(model, B, T, gen)`` a padded
batch of mixed lengths to trace and to check with. Shapes use the letters of :mod:`rnnkit`; the
letters B, T, S and N are dynamic axes, numbers are fixed by the model's config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.errors import ConfigError

DYNAMIC = ("B", "T", "S", "N", "W")


@dataclass(frozen=True)
class Port:
    """One named input or output of a graph."""

    name: str
    shape: tuple[str | int, ...]
    dtype: str  # "float32", "int64" or "bool"
    meaning: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "meaning": self.meaning}


@dataclass(frozen=True)
class Graph:
    name: str  # the file is <name>.onnx
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    run: Callable[..., tuple[Tensor, ...]]
    example: Callable[[nn.Module, int, int, torch.Generator], tuple[Tensor, ...]]
    note: str = ""


LENGTHS = Port(
    "lengths", ("B",), "int64", "real steps per sequence, 1 <= length <= T; steps after are padding"
)


def _lengths(B: int, T: int, gen: torch.Generator) -> Tensor:
    """(B,) mixed lengths in [1, T]: the first row full, the last one step long."""
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[-1] = T, 1
    return lengths


def _floats(*shape: int, gen: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=gen)


def _state_ports(state_type: type, L: int, H: int, suffix: str, meaning: str) -> tuple[Port, ...]:
    fields = state_type._fields
    return tuple(Port(f"{f}{suffix}", (L, "B", H), "float32", f"{meaning} ({f})") for f in fields)


def _state_example(fields: int, L: int, B: int, H: int, gen: torch.Generator) -> tuple[Tensor, ...]:
    return tuple(0.5 * torch.randn(L, B, H, generator=gen) for _ in range(fields))


# --- forecasters -----------------------------------------------------------------------------------


def forecaster(model: nn.Module) -> list[Graph]:
    c = model.config
    rows, D, O, h = c.lookback + c.horizon, c.num_features, c.output_size, c.horizon
    ensemble = c.name == "forecast_ensemble"
    output = (model.members[0] if ensemble else model).output
    takes_lengths = c.strategy != "recursive"
    inputs = [Port("inputs", ("B", rows, D), "float32", "lookback rows, then horizon rows (module docs)")]
    if takes_lengths:
        inputs.append(
            Port("lengths", ("B",), "int64", f"observed rows per window, 1 <= length <= {c.lookback}")
        )
    forecast = Port("forecast", ("B", h, O), "float32", "the point forecast (value, mean or median)")
    if ensemble:
        outputs = (
            forecast,
            Port("members", (c.members, "B", h, O), "float32", "each member's point forecast"),
        )

        def run(m, x, lengths=None):
            members = m.member_forecasts(x, lengths)  # (M, B, horizon, O)
            lower_median = members.sort(0).values[
                (members.shape[0] - 1) // 2
            ]  # torch.median's, which ONNX lacks
            return lower_median, members
    else:
        P = output.num_params
        params = Port("params", ("B", h, O, P), "float32", f"{c.distribution} parameters per value (sorted)")
        outputs = (forecast, params)

        def run(m, x, lengths=None):
            params = m.predict_params(x, lengths)  # (B, horizon, O, P)
            return m.output.point(params), params

    def example(m, B, T, gen):
        x = _floats(B, rows, D, gen=gen)
        return (x, _lengths(B, c.lookback, gen)) if takes_lengths else (x,)

    return [Graph("model", tuple(inputs), outputs, run, example)]


# --- readers of whole sequences: classifier, tagger, autoencoder, ctc ---------------------------------


def _sequence_input(vocab: int | None, width: int | None, name_tokens: str = "tokens") -> Port:
    if vocab is not None:
        return Port(name_tokens, ("B", "T"), "int64", f"token ids in [0, {vocab}), padding after each length")
    return Port("inputs", ("B", "T", width), "float32", "features per step, padding after each length")


def _sequence_example(vocab: int | None, width: int | None):
    def example(m, B, T, gen):
        if vocab is not None:
            x = torch.randint(1, vocab, (B, T), generator=gen)
        else:
            x = _floats(B, T, width, gen=gen)
        return x, _lengths(B, T, gen)

    return example


def classifier(model: nn.Module) -> list[Graph]:
    c = model.config
    C = 1 if c.head == "binary" else c.num_classes
    shape = ("B",) if c.head == "binary" else ("B", C)
    kind = (
        "softmax over classes" if c.head == "multiclass" else "sigmoid, P(class 1)" if C == 1 else "sigmoid"
    )
    outputs = [
        Port("logits", shape, "float32", "class scores"),
        Port("probabilities", shape, "float32", kind),
    ]
    if c.pooling == "attention":
        outputs.append(Port("attention", ("B", "T"), "float32", "attention pooling weights, 0 on padding"))

    def run(m, x, lengths):
        out = m(x, lengths)
        logits = out.logits
        probs = torch.softmax(logits, -1) if m.config.head == "multiclass" else torch.sigmoid(logits)
        return (logits, probs) if out.attention is None else (logits, probs, out.attention)

    inputs = (_sequence_input(c.vocab_size, c.input_size), LENGTHS)
    return [Graph("model", inputs, tuple(outputs), run, _sequence_example(c.vocab_size, c.input_size))]


def tagger(model: nn.Module) -> list[Graph]:
    c = model.config
    if c.char_vocab_size:
        W = "W"
        tokens = Port("tokens", ("B", "T", W), "int64", "per token: its word id, then its character ids")
    else:
        tokens = _sequence_input(c.vocab_size, None)
    emissions = Port("emissions", ("B", "T", c.num_tags), "float32", "each step's tag scores")
    note = "softmax head: argmax of emissions over each real step"
    if c.head == "crf":
        note = "crf head: Viterbi over emissions with metadata crf.start, crf.transitions, crf.end"

    def run(m, x, lengths):
        return (m(x, lengths),)

    def example(m, B, T, gen):
        words = torch.randint(1, c.vocab_size, (B, T), generator=gen)
        if c.char_vocab_size:
            chars = torch.randint(0, c.char_vocab_size, (B, T, 6), generator=gen)
            words = torch.cat([words[..., None], chars], -1)  # (B, T, 1 + W)
        return words, _lengths(B, T, gen)

    return [Graph("model", (tokens, LENGTHS), (emissions,), run, example, note)]


def autoencoder(model: nn.Module) -> list[Graph]:
    D = model.config.input_size
    outputs = (
        Port("reconstructions", ("B", "T", D), "float32", "the reconstruction of every step"),
        Port("errors", ("B", "T"), "float32", "squared error per step, mean over features; 0 on padding"),
    )

    def run(m, x, lengths):
        return m(x, lengths), m.errors(x, lengths)

    return [Graph("model", (_sequence_input(None, D), LENGTHS), outputs, run, _sequence_example(None, D))]


def ctc(model: nn.Module) -> list[Graph]:
    c = model.config
    D, C = c.input_size, model.output.out_features
    out = Port("log_probs", ("B", "T", C), "float32", "per-frame log-probabilities; label 0 is the blank")
    return [
        Graph(
            "model",
            (_sequence_input(None, D), LENGTHS),
            (out,),
            lambda m, x, n: (m(x, n),),
            _sequence_example(None, D),
        )
    ]


# --- stateful readers: language model, piano roll, captioner --------------------------------------


def _stack_state(layers_state_type, fields: tuple[Tensor, ...]):
    return layers_state_type(*fields)


def _decoder_graph(lm: nn.Module, conditioned: bool, name: str = "model") -> Graph:
    """Tokens and the state to go on from -> logits and the state after each sequence's last token."""
    c, L, H = lm.config, lm.config.num_layers, lm.config.hidden_size
    state_type = type(lm.initial_state(1))
    S = len(state_type._fields)
    inputs = [Port("tokens", ("B", "T"), "int64", f"token ids in [0, {c.vocab_size})"), LENGTHS]
    inputs += _state_ports(
        state_type, L, H, "0", "the state to start from: zeros, the start graph's, or a previous h_n"
    )
    outputs = [Port("logits", ("B", "T", c.vocab_size), "float32", "scores of the token after each position")]
    outputs += _state_ports(state_type, L, H, "_n", "the state after each sequence's last real token")
    if conditioned:
        C = lm.conditioning.width if hasattr(lm.conditioning, "width") else None
        inputs.append(Port("condition", (1, "B", C or "C"), "float32", "the condition, from the start graph"))

    def run(m, tokens, lengths, *rest):
        from rnnkit.models.conditioning import ConditionedState

        fields, condition = rest[:S], (rest[S] if conditioned else None)
        state = state_type(*fields)
        if conditioned:
            state = ConditionedState(state, condition)
        logits, final = m(tokens, state, lengths)
        layers = final.layers if conditioned else final
        return (logits, *layers)

    def example(m, B, T, gen):
        tokens = torch.randint(0, c.vocab_size, (B, T), generator=gen)
        state = _state_example(S, L, B, H, gen)
        if conditioned:
            start = m.start(_condition_example(m, B, gen))
            state = tuple(start.layers)
            return (tokens, _lengths(B, T, gen), *state, start.condition)
        return (tokens, _lengths(B, T, gen), *state)

    return Graph(name, tuple(inputs), tuple(outputs), run, example)


def _condition_example(lm: nn.Module, B: int, gen: torch.Generator) -> Tensor:
    c = lm.config
    if c.num_conditions:
        return torch.randint(0, c.num_conditions, (B,), generator=gen)
    return torch.randn(B, c.condition_size, generator=gen)


def _start_graph(lm: nn.Module, encode: Callable | None, features: int | None) -> Graph:
    """condition (or features) -> the decoder's starting state and the condition it carries."""
    c, L, H = lm.config, lm.config.num_layers, lm.config.hidden_size
    if features is not None:
        given = Port("features", ("B", features), "float32", "the example's feature vector")
    elif c.num_conditions:
        given = Port("condition", ("B",), "int64", f"class ids in [0, {c.num_conditions})")
    else:
        given = Port("condition", ("B", c.condition_size), "float32", "the condition features")
    outputs = _state_ports(type(lm.initial_state(1)), L, H, "0", "the decoder's starting state")
    outputs += (Port("condition_state", (1, "B", "C"), "float32", "the condition input of the model graph"),)

    def run(m, x):
        start = m.start(x) if encode is None else m.decoder.start(m.encoder(x))
        return (*start.layers, start.condition)

    def example(m, B, T, gen):
        if features is not None:
            return (torch.randn(B, features, generator=gen),)
        return (_condition_example(lm, B, gen),)

    return Graph("start", (given,), outputs, run, example)


def language_model(model: nn.Module) -> list[Graph]:
    if model.config.conditioned:
        return [_start_graph(model, None, None), _decoder_graph(model, True)]
    return [_decoder_graph(model, False)]


def captioner(model: nn.Module) -> list[Graph]:
    decoder = _decoder_graph(model.decoder, True, "decoder")
    inner = decoder.run

    def run(m, *args):
        return inner(m.decoder, *args)

    def example(m, B, T, gen):
        start = m.start(torch.randn(B, m.config.input_size, generator=gen))
        tokens = torch.randint(0, m.decoder.config.vocab_size, (B, T), generator=gen)
        return (tokens, _lengths(B, T, gen), *start.layers, start.condition)

    step = Graph("decoder", decoder.inputs, decoder.outputs, run, example)
    return [_start_graph(model.decoder, model.encoder, model.config.input_size), step]


def piano_roll(model: nn.Module) -> list[Graph]:
    c = model.config
    K, L, H = c.num_keys, c.num_layers, c.hidden_size
    S = len(model.encoder.state_type._fields)
    frames = Port("frames", ("B", "T", K), "float32", "0/1 piano-roll frames, padding after each length")
    inputs = (
        frames,
        LENGTHS,
        *_state_ports(model.encoder.state_type, L, H, "0", "the state to start from (zeros)"),
    )
    states = _state_ports(
        model.encoder.state_type, L, H, "_n", "the state after each sequence's last real frame"
    )
    if c.output == "independent":
        outputs = (
            Port("logits", ("B", "T", K), "float32", "each key's logit in the frame after each frame"),
            Port("probabilities", ("B", "T", K), "float32", "sigmoid of the logits"),
            *states,
        )
    else:
        outputs = (
            Port("features", ("B", "T", H), "float32", "the recurrent features after each frame"),
            *states,
        )

    def run(m, x, lengths, *fields):
        features, final = m(x, m.encoder.state_type(*fields), lengths)
        if m.config.output == "independent":
            logits = m.output(features)
            return (logits, torch.sigmoid(logits), *final)
        return (features, *final)

    def example(m, B, T, gen):
        x = torch.bernoulli(torch.full((B, T, K), 0.3), generator=gen)
        return (x, _lengths(B, T, gen), *_state_example(S, L, B, H, gen))

    graphs = [Graph("model", inputs, outputs, run, example)]
    if c.output == "nade":
        nade_in = (
            Port("features", ("N", H), "float32", "features of the model graph, one row per frame"),
            Port("frames", ("N", K), "float32", "the 0/1 frames that follow those features"),
        )
        nade_out = (Port("logits", ("N", K), "float32", "each key's logit given the frame's keys below it"),)

        def nade_example(m, B, T, gen):
            return torch.randn(B * T, H, generator=gen), torch.bernoulli(
                torch.full((B * T, K), 0.3), generator=gen
            )

        note = "sample a frame key by key: logits of key k depend on frames[:, :k] only"
        graphs.append(Graph("nade", nade_in, nade_out, lambda m, f, x: (m.logits(f, x),), nade_example, note))
    return graphs


# --- seq2seq -------------------------------------------------------------------------------------


def seq2seq(model: nn.Module) -> list[Graph]:
    c, attention, feeding = model.config, model.attention is not None, model.feeding
    L, H = len(model.decoder.cells), c.hidden_size
    F = model.encoder.output_size
    state_type = model.decoder.state_type
    S = len(state_type._fields)
    memory = [
        Port("memory", ("B", "S", F), "float32", "the encoder's outputs"),
        Port("memory_mask", ("B", "S"), "bool", "True on real source steps"),
    ]
    if attention:
        memory.append(
            Port(
                "memory_keys",
                ("B", "S", model.attention.key_size if hasattr(model.attention, "key_size") else "A"),
                "float32",
                "the attention's prepared keys",
            )
        )
    state = list(_state_ports(model.decoder.state_type, L, H, "0", "the decoder state"))
    if feeding:
        state.append(Port("feed0", ("B", H), "float32", "the last attentional vector (input feeding)"))
    source = Port("source", ("B", "S"), "int64", f"source ids in [0, {c.source_vocab_size})")
    lengths = Port("source_lengths", ("B",), "int64", "real source tokens per row, 1 <= length <= S")

    def encode(m, x, n):
        mem = m.encode(x, n)
        out = [mem.outputs, mem.mask] + ([mem.keys] if mem.keys is not None else [])
        out += list(mem.state.rnn) + ([mem.state.feed] if mem.state.feed is not None else [])
        return tuple(out)

    def encode_example(m, B, T, gen):
        return torch.randint(0, c.source_vocab_size, (B, T), generator=gen), _lengths(B, T, gen)

    step_out = [Port("logits", ("B", c.target_vocab_size), "float32", "scores of the next target token")]
    step_out += [
        Port(p.name.replace("0", "_n"), p.shape, p.dtype, "the next " + p.meaning[4:]) for p in state
    ]
    if attention:
        step_out.append(Port("attention", ("B", "S"), "float32", "attention weights over the source"))
    tokens = Port("tokens", ("B",), "int64", f"the previous target ids (bos_id={c.bos_id} first)")
    M = len(memory)

    def step(m, previous, *rest):
        from rnnkit.models.seq2seq import DecoderState, Memory

        mem, fields = rest[:M], rest[M:]
        decoder_state = DecoderState(state_type(*fields[:S]), fields[S] if feeding else None)
        memory_tuple = Memory(mem[0], mem[1], mem[2] if attention else None, decoder_state)
        logits, new, weights = m.decode_step(previous, decoder_state, memory_tuple)
        out = [logits, *new.rnn] + ([new.feed] if feeding else []) + ([weights] if attention else [])
        return tuple(out)

    def step_example(m, B, T, gen):
        encoded = encode(m, *encode_example(m, B, T, gen))
        previous = torch.randint(0, c.target_vocab_size, (B,), generator=gen)
        return (previous, *encoded)

    note = (
        "greedy decoding: run encoder once, then decoder_step from bos_id until eos_id, feeding back states"
    )
    return [
        Graph("encoder", (source, lengths), (*memory, *state), encode, encode_example),
        Graph("decoder_step", (tokens, *memory, *state), tuple(step_out), step, step_example, note),
    ]


SIGNATURES: dict[str, Callable[[nn.Module], list[Graph]]] = {
    "forecaster": forecaster,
    "forecast_ensemble": forecaster,
    "classifier": classifier,
    "tagger": tagger,
    "autoencoder": autoencoder,
    "ctc": ctc,
    "language_model": language_model,
    "piano_roll": piano_roll,
    "captioner": captioner,
    "seq2seq": seq2seq,
}


def graphs_of(model: nn.Module) -> list[Graph]:
    """The graphs that export ``model`` (a registered rnnkit task model)."""
    name = getattr(getattr(model, "config", None), "name", None)
    if name not in SIGNATURES:
        raise ConfigError(
            f"no ONNX signature for model {name!r}; rnnkit exports {', '.join(sorted(SIGNATURES))}"
        )
    return SIGNATURES[name](model)
