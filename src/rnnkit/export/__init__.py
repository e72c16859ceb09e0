"""Export trained models: ONNX graphs with dynamic batch and time, checked against eager outputs.

    from rnnkit.bundle import load_bundle
    from rnnkit.export import export_onnx
    result = export_onnx(load_bundle("runs/sine/bundle"), "runs/sine/onnx")

See :mod:`rnnkit.export.onnx` for how, :mod:`rnnkit.export.signatures` for what each model's graphs
take and give (one module per family of task models, on :mod:`rnnkit.export.graph`'s ports), and
:mod:`rnnkit.export.tracing` for the time loops ONNX gets.
"""

from rnnkit.export.graph import Graph, Port
from rnnkit.export.onnx import Check, ExportError, ExportResult, export_onnx
from rnnkit.export.signatures import SIGNATURES, graphs_of

__all__ = ["SIGNATURES", "Check", "ExportError", "ExportResult", "Graph", "Port", "export_onnx", "graphs_of"]
