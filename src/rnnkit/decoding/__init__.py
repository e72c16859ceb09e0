"""Decoding: sampling text from a language model, and greedy or beam search for encoder-decoders and
language models.

- :mod:`rnnkit.decoding.sampling`: ``generate``, ``generate_text``, ``sample_next`` and the top-k
  and top-p filters, for anything called ``model(tokens, state) -> (logits, state)``;
- :mod:`rnnkit.decoding.search`: ``greedy_search`` and ``beam_search``, batched, for anything with
  ``encode`` and ``decode_step`` (:class:`rnnkit.models.seq2seq.Seq2Seq`), and ``beam_generate``,
  beam search over a language model's continuations of a prompt;
- :mod:`rnnkit.decoding.beam`: the beam search core both use, over a step function and a state
  reorder.
"""

from rnnkit.decoding.beam import Hypothesis
from rnnkit.decoding.sampling import (
    Codec,
    Generation,
    generate,
    generate_text,
    sample_next,
    stream,
    top_k_filter,
    top_p_filter,
)
from rnnkit.decoding.search import beam_generate, beam_search, greedy_search

__all__ = [
    "Codec",
    "Generation",
    "Hypothesis",
    "beam_generate",
    "beam_search",
    "generate",
    "generate_text",
    "greedy_search",
    "sample_next",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
