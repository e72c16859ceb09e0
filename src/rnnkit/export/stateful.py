"""ONNX signatures of the models that carry a state from call to call: language model, captioner
and piano roll. Their ``model`` graph takes the state to go on from and gives the state after each
sequence's last real step, so a caller can generate or stream chunk by chunk; a conditioned decoder
(conditioned language model, captioner) adds a ``start`` graph that turns the condition into its
first state, and a NADE piano roll a ``nade`` graph that scores a frame key by key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.export.graph import LENGTHS, Graph, Port, example_lengths, state_example, state_ports


def language_model(model: nn.Module) -> list[Graph]:
    """Tokens and a state -> logits and the next state; ``start`` first when it is conditioned."""
    if model.config.conditioned:
        return [_start_graph(model, None, None), _decoder_graph(model, True)]
    return [_decoder_graph(model, False)]


def captioner(model: nn.Module) -> list[Graph]:
    """``start``: features -> the decoder's first state; ``decoder``: the language model graph."""
    decoder = _decoder_graph(model.decoder, True, "decoder")
    inner = decoder.run

    def run(m, *args):
        return inner(m.decoder, *args)

    def example(m, B, T, gen):
        start = m.start(torch.randn(B, m.config.input_size, generator=gen))
        tokens = torch.randint(0, m.decoder.config.vocab_size, (B, T), generator=gen)
        return (tokens, example_lengths(B, T, gen), *start.layers, start.condition)

    step = Graph("decoder", decoder.inputs, decoder.outputs, run, example)
    return [_start_graph(model.decoder, model.encoder, model.config.input_size), step]


def piano_roll(model: nn.Module) -> list[Graph]:
    """Frames and a state -> each key's logit for the next frame (or, with a NADE output, the
    features the ``nade`` graph scores key by key) and the next state."""
    c = model.config
    K, L, H = c.num_keys, c.num_layers, c.hidden_size
    state_type = model.encoder.state_type
    S = len(state_type._fields)
    frames = Port("frames", ("B", "T", K), "float32", "0/1 piano-roll frames, padding after each length")
    inputs = (frames, LENGTHS, *state_ports(state_type, L, H, "0", "the state to start from (zeros)"))
    states = state_ports(state_type, L, H, "_n", "the state after each sequence's last real frame")
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
        return (x, example_lengths(B, T, gen), *state_example(S, L, B, H, gen))

    graphs = [Graph("model", inputs, outputs, run, example)]
    if c.output == "nade":
        graphs.append(_nade_graph(K, H))
    return graphs


def _nade_graph(K: int, H: int) -> Graph:
    """Rows of features and the frames that follow them -> each key's logit given the keys below."""
    inputs = (
        Port("features", ("N", H), "float32", "features of the model graph, one row per frame"),
        Port("frames", ("N", K), "float32", "the 0/1 frames that follow those features"),
    )
    outputs = (Port("logits", ("N", K), "float32", "each key's logit given the frame's keys below it"),)

    def run(m, features, frames):
        return (m.logits(features, frames),)

    def example(m, B, T, gen):
        features = torch.randn(B * T, H, generator=gen)  # (N, H)
        return features, torch.bernoulli(torch.full((B * T, K), 0.3), generator=gen)  # (N, K)

    note = "sample a frame key by key: logits of key k depend on frames[:, :k] only"
    return Graph("nade", inputs, outputs, run, example, note)


def _decoder_graph(lm: nn.Module, conditioned: bool, name: str = "model") -> Graph:
    """Tokens and the state to go on from -> logits and the state after each sequence's last token."""
    c, L, H = lm.config, lm.config.num_layers, lm.config.hidden_size
    state_type = type(lm.initial_state(1))
    S = len(state_type._fields)
    inputs = [Port("tokens", ("B", "T"), "int64", f"token ids in [0, {c.vocab_size})"), LENGTHS]
    inputs += state_ports(
        state_type, L, H, "0", "the state to start from: zeros, the start graph's, or a previous h_n"
    )
    outputs = [Port("logits", ("B", "T", c.vocab_size), "float32", "scores of the token after each position")]
    outputs += state_ports(state_type, L, H, "_n", "the state after each sequence's last real token")
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
        state = state_example(S, L, B, H, gen)
        if conditioned:
            start = m.start(_condition_example(m, B, gen))
            state = tuple(start.layers)
            return (tokens, example_lengths(B, T, gen), *state, start.condition)
        return (tokens, example_lengths(B, T, gen), *state)

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
    outputs = state_ports(type(lm.initial_state(1)), L, H, "0", "the decoder's starting state")
    outputs += (Port("condition_state", (1, "B", "C"), "float32", "the condition input of the model graph"),)

    def run(m, x):
        start = m.start(x) if encode is None else m.decoder.start(m.encoder(x))
        return (*start.layers, start.condition)

    def example(m, B, T, gen):
        if features is not None:
            return (torch.randn(B, features, generator=gen),)
        return (_condition_example(lm, B, gen),)

    return Graph("start", (given,), outputs, run, example)
