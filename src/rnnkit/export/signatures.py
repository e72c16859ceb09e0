"""What each task model's ONNX graphs compute: named inputs and outputs, shapes, dtypes, meaning.

:data:`SIGNATURES` maps a registered model name to the function that lists its graphs
(:class:`~rnnkit.export.graph.Graph`, defined with :class:`~rnnkit.export.graph.Port` in
:mod:`rnnkit.export.graph`); each family of task models has its own module:

    forecasting   forecaster, forecast_ensemble
    readers       classifier, tagger, autoencoder, ctc (whole padded sequences, nothing carried)
    stateful      language_model, captioner, piano_roll (a state in, the next state out)
    seq2seq       seq2seq (an encoder graph and a decoder_step graph)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rnnkit.errors import ConfigError
from rnnkit.export.forecasting import forecaster
from rnnkit.export.graph import DYNAMIC, LENGTHS, Graph, Port
from rnnkit.export.readers import autoencoder, classifier, ctc, tagger
from rnnkit.export.seq2seq import seq2seq
from rnnkit.export.stateful import captioner, language_model, piano_roll

__all__ = ["DYNAMIC", "LENGTHS", "SIGNATURES", "Graph", "Port", "graphs_of"]

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
