"""ONNX signature of the sequence-to-sequence model: an ``encoder`` graph run once per source batch,
and a ``decoder_step`` graph run once per target token, each step fed the memory and the state that
the previous one gave (greedy or beam search runs outside the graphs).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.export.graph import Graph, Port, example_lengths, state_ports


def seq2seq(model: nn.Module) -> list[Graph]:
    """source, source_lengths -> memory and the decoder's first state; the previous target ids,
    memory and state -> the next token's logits, the next state and (attention) the weights."""
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
        A = model.attention.key_size if hasattr(model.attention, "key_size") else "A"
        memory.append(Port("memory_keys", ("B", "S", A), "float32", "the attention's prepared keys"))
    state = list(state_ports(state_type, L, H, "0", "the decoder state"))
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
        return torch.randint(0, c.source_vocab_size, (B, T), generator=gen), example_lengths(B, T, gen)

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
