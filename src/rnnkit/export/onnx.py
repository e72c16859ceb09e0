"""Export a trained rnnkit model to ONNX, checked against its eager outputs before it counts as done.

    bundle = rnnkit.bundle.load_bundle("runs/sine/bundle")
    result = export_onnx(bundle, "runs/sine/onnx")     # model.onnx, metadata.json, preprocessing.json
    for check in result.checks: print(check)

How: ``torch.onnx.export(..., dynamo=True)`` on an ExportedProgram from ``torch.export.export``
(non-strict) of :func:`rnnkit.export.tracing.exportable`'s twin of the model, whose time loops are
``torch.ops.higher_order.scan``: the exporter writes them as ONNX ``Scan``, so batch and time stay
dynamic. The TorchScript exporter (``dynamo=False``) would unroll a cell loop for the traced T, or
export torch's fused kernels, whose variable-length (PackedSequence) export is broken upstream.

Every graph then runs in onnxruntime on a padded batch of mixed lengths with another B and T than it
was traced with, beside the original model (its fused or C++ path) on the same batch; a difference
above ``atol + rtol * |eager|`` raises :class:`ExportError` and nothing is written. The output
directory is filled as a hidden sibling and renamed into place, so it never holds half an export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from rnnkit.errors import RnnkitError
from rnnkit.export.graph import DYNAMIC, Graph
from rnnkit.export.signatures import graphs_of
from rnnkit.export.tracing import exportable
from rnnkit.files import replace_directory
from rnnkit.version import __version__

CHECK_SIZE = (4, 9)  # (B, T) checked at; traced at other sizes (_trace_size)
ATOL, RTOL = 1e-4, 1e-4
METADATA = "metadata.json"


class ExportError(RnnkitError):
    """An export failed, or its graph disagrees with the eager model beyond the tolerance."""


@dataclass
class Check:
    graph: str
    batch: int
    time: int | None  # None: the graph has no time axis (a forecaster's window is fixed)
    max_abs_diff: float
    atol: float = ATOL
    rtol: float = RTOL

    def __str__(self) -> str:
        return (
            f"{self.graph}.onnx: onnxruntime vs eager on B={self.batch}"
            f"{'' if self.time is None else f', T={self.time}'} (mixed lengths): "
            f"max |diff| {self.max_abs_diff:.2e} <= tolerance {self.atol:g} + {self.rtol:g} * |eager|"
        )


@dataclass
class ExportResult:
    path: Path
    files: list[str]
    checks: list[Check] = field(default_factory=list)


def export_onnx(bundle: Any, out_dir: str | Path, opset: int | None = None, seed: int = 0) -> ExportResult:
    """Export a loaded bundle (``rnnkit.bundle.load_bundle``: its ``model``, ``config``,
    ``preprocessing``) to ``out_dir``: one ``<graph>.onnx`` per graph, ``metadata.json`` (inputs,
    outputs, shapes, dtypes, meaning, the checks) and the bundle's ``preprocessing.json`` and
    ``config.yaml``. Raises ExportError when a graph cannot be exported or fails its check."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx, onnxruntime and onnxscript: pip install 'rnnkit[onnx]'"
        ) from None
    model = bundle.model.eval()
    graphs = graphs_of(model)
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / METADATA).is_file() and any(out_dir.iterdir()):
        raise ExportError(
            f"{out_dir} exists and is not an rnnkit ONNX export; remove it or pick another path"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        twin = exportable(model)
        checks, described = [], {}
        for graph in graphs:
            file = new / f"{graph.name}.onnx"
            sizes = _export(twin, graph, file, opset, seed)
            checks.append(_check(model, graph, file, seed + 1))
            described[graph.name] = _describe(graph, sizes, checks[-1])
        _write_metadata(new, bundle, described)
        replace_directory(new, out_dir)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return ExportResult(out_dir, sorted(p.name for p in out_dir.iterdir()), checks)


class _Call(nn.Module):
    """``graph.run(model, *inputs)`` as a module, so torch.export sees the model's parameters."""

    def __init__(self, model: nn.Module, graph: Graph) -> None:
        super().__init__()
        self.model, self.graph = model, graph

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.graph.run(self.model, *inputs))


def _export(twin: nn.Module, graph: Graph, file: Path, opset: int | None, seed: int) -> dict[str, list]:
    """Trace ``graph`` on the twin and write it; returns each input's traced shape (for metadata)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        args = graph.example(twin, *_trace_size(twin), gen)
    dims = {letter: torch.export.Dim.AUTO for letter in DYNAMIC}  # the check proves them dynamic
    shapes = tuple(
        {i: dims[d] for i, d in enumerate(port.shape) if d in DYNAMIC} or None for port in graph.inputs
    )
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own deprecation notes while it traces
            program = torch.export.export(_Call(twin, graph), args, dynamic_shapes=(shapes,), strict=False)
            onnx_program = torch.onnx.export(
                program,
                args,
                input_names=[p.name for p in graph.inputs],
                output_names=[p.name for p in graph.outputs],
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        onnx_program.save(str(file))
    except RnnkitError:
        raise
    except Exception as error:  # torch.export and the ONNX exporter raise many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{graph.name}: torch could not export this model to ONNX: {first}") from error
    return {p.name: list(a.shape) for p, a in zip(graph.inputs, args, strict=True)}


def _trace_size(model: nn.Module) -> tuple[int, int]:
    """(B, T) equal to no size in the model's weights or config, nor to CHECK_SIZE: torch.export
    assumes two axes of one size are one axis (duck sizing), which would tie B or T to, say, H."""
    taken = {n for p in model.state_dict().values() for n in p.shape} | set(CHECK_SIZE)
    taken |= {v for v in model.config.model_dump().values() if isinstance(v, int)}
    free = [n for n in range(5, 1000) if n not in taken and all(n % k for k in range(2, n))]
    return free[0], free[1]


def _check(model: nn.Module, graph: Graph, file: Path, seed: int) -> Check:
    """onnxruntime against the eager model on a new padded batch of mixed lengths, other B and T."""
    import onnxruntime as ort

    B, T = CHECK_SIZE
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        args = graph.example(model, B, T, gen)
        expected = graph.run(model, *args)
    feeds = {p.name: a.numpy() for p, a in zip(graph.inputs, args, strict=True)}
    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        got = session.run([p.name for p in graph.outputs], feeds)
    except Exception as error:  # onnxruntime's own exception types
        first = str(error).strip().splitlines()[0][:300]
        raise ExportError(
            f"{graph.name}.onnx does not run on B={B}, T={T} (other sizes than traced: an axis was fixed "
            f"by the trace?): {first}; nothing was written"
        ) from error
    worst = 0.0
    for port, want, have in zip(graph.outputs, expected, got, strict=True):
        have = torch.from_numpy(have)
        if tuple(have.shape) != tuple(want.shape):
            raise ExportError(
                f"{graph.name}.onnx output {port.name!r} has shape {tuple(have.shape)}, eager "
                f"{tuple(want.shape)}: the export is wrong; nothing was written"
            )
        if want.dtype == torch.bool:
            diff, bound = float((have != want).sum()), 0.0
        else:
            gap = (have.double() - want.double()).abs()
            diff, bound = float(gap.max()), float((gap - RTOL * want.double().abs()).max())
        worst = max(worst, diff)
        if bound > ATOL or diff != diff:
            raise ExportError(
                f"{graph.name}.onnx output {port.name!r} differs from eager by {diff:.3g} (tolerance "
                f"{ATOL:g} + {RTOL:g} * |eager|) on B={B}, T={T}: the export is wrong; nothing was written"
            )
    timed = any(d in ("T", "S") for p in graph.inputs for d in p.shape)
    return Check(graph.name, B, T if timed else None, worst)


def _describe(graph: Graph, traced: Mapping[str, list], check: Check) -> dict[str, Any]:
    def port(p, actual=None):
        d = p.describe()
        if actual is not None:  # fixed sizes named by a letter: the traced number
            d["shape"] = [
                s if s in DYNAMIC or isinstance(s, int) else actual[i] for i, s in enumerate(p.shape)
            ]
        return d

    return {
        "file": f"{graph.name}.onnx",
        "inputs": [port(p, traced[p.name]) for p in graph.inputs],
        "outputs": [port(p) for p in graph.outputs],
        "dynamic_axes": {"B": "batch", "T": "time", "S": "source time", "N": "rows", "W": "characters"},
        "note": graph.note,
        "check": {
            "batch": check.batch,
            "time": check.time,
            "max_abs_diff": check.max_abs_diff,
            "atol": check.atol,
            "rtol": check.rtol,
        },
    }


def _write_metadata(new: Path, bundle: Any, graphs: dict[str, Any]) -> None:
    model = bundle.model
    extra: dict[str, Any] = {}
    crf = getattr(model, "crf", None)
    if crf is not None:
        start, transitions, end = (t.detach().tolist() for t in crf.scores())
        extra["crf"] = {"start": start, "transitions": transitions, "end": end}
    combination = (bundle.preprocessing or {}).get("combine") or {}
    if combination.get("models"):  # a forecaster averaged with classical models (data.combine)
        extra["combine"] = (
            f"the graph is the recurrent model alone; rnnkit averages its forecast with those of "
            f"{combination['models']} fitted per series, whose options and parameters are in "
            "preprocessing.json under combine (statsmodels: ARIMA(history, **options)"
            ".filter(params).forecast(horizon))"
        )
    config = json.loads(json.dumps(bundle.config, default=str))
    metadata = {
        "format": "onnx",
        "rnnkit_version": __version__,
        "torch_version": torch.__version__,
        "model": model.config.name,
        "task": config.get("task"),
        "graphs": graphs,
        "padding": "pad every sequence at its end; steps past its length never change the state",
        "preprocessing": "preprocessing.json (the bundle's: scaler, vocabulary, ...) and config.yaml",
        **extra,
    }
    (new / METADATA).write_text(json.dumps(metadata, indent=2))
    (new / "preprocessing.json").write_text(json.dumps(bundle.preprocessing or {}, indent=2))
    (new / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
