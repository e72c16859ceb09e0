"""ONNX export: every task model's graphs equal its eager outputs on padded batches of mixed lengths,
with another batch size and length than traced (dynamic axes), bidirectional encoders, every cell."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime as ort

from rnnkit.bundle import save_bundle
from rnnkit.cli.main import main
from rnnkit.export import ExportError, export_onnx, graphs_of
from rnnkit.models import build_model

TINY = {"hidden_size": 3}
MODELS = {
    "forecaster-gru-bi": {
        "name": "forecaster",
        "lookback": 5,
        "horizon": 2,
        "cell": "gru",
        "bidirectional": True,
    },
    "forecaster-seq2seq-quantile": {
        "name": "forecaster",
        "lookback": 4,
        "horizon": 2,
        "strategy": "seq2seq",
        "distribution": "quantile",
        "quantiles": [0.1, 0.5, 0.9],
    },
    "ensemble": {"name": "forecast_ensemble", "lookback": 4, "horizon": 1, "members": 2, "cell": "rnn"},
    "forecaster-static-categories": {
        "name": "forecaster",
        "lookback": 4,
        "horizon": 2,
        "num_known": 1,
        "static_cardinalities": [3, 5],
    },
    "classifier-lstm-bi-attention": {
        "name": "classifier",
        "vocab_size": 9,
        "num_classes": 3,
        "embedding_dim": 2,
        "bidirectional": True,
        "num_layers": 2,
        "pooling": "attention",
    },
    "tagger-mingru-bi-crf": {
        "name": "tagger",
        "vocab_size": 9,
        "num_tags": 3,
        "embedding_dim": 2,
        "cell": "mingru",
        "bidirectional": True,
        "head": "crf",
    },
    "language-lstm": {"name": "language_model", "vocab_size": 7, "embedding_dim": 3, "num_layers": 2},
    "autoencoder-minlstm-bi": {
        "name": "autoencoder",
        "input_size": 2,
        "cell": "minlstm",
        "bidirectional": True,
    },
    "ctc-rnn-bi-layernorm": {
        "name": "ctc",
        "input_size": 2,
        "num_labels": 3,
        "cell": "rnn",
        "bidirectional": True,
        "layer_norm": True,
    },
    "piano-nade": {"name": "piano_roll", "num_keys": 4, "output": "nade", "nade_size": 3, "cell": "gru"},
    "seq2seq-bi-attention": {
        "name": "seq2seq",
        "source_vocab_size": 8,
        "target_vocab_size": 8,
        "embedding_dim": 2,
        "bidirectional": True,
    },
    "captioner": {"name": "captioner", "input_size": 3, "vocab_size": 8, "embedding_dim": 2},
}


def _bundle(config: dict):
    torch.manual_seed(0)
    model = build_model({**TINY, **config})
    return types.SimpleNamespace(
        model=model.eval(), config={"model": config}, preprocessing={"x": 1}, path=None
    )


@pytest.fixture(scope="module", autouse=True)
def torchlib_table_once():
    """torch.onnx.export rebuilds its table of ATen -> ONNX translations on every call (0.4 s, 15
    calls here); build it once per module. The table is only read during an export. Nothing is
    patched if torch moves it."""
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry as table
    except ImportError:
        table = None
    if not hasattr(table, "from_torchlib"):
        yield
        return
    build, built = table.from_torchlib.__func__, {}

    def once(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = build(cls, *args, **kwargs)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(table, "from_torchlib", classmethod(once))
        yield


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(key)``: MODELS[key] exported once for the whole module (tracing and writing a model
    is 2 to 5 s, nearly all of it in torch.export and torch.onnx.export), shared by the tests below."""
    done = {}

    def export(key: str) -> types.SimpleNamespace:
        if key not in done:
            bundle = _bundle(MODELS[key])
            path = tmp_path_factory.mktemp(key) / "onnx"
            done[key] = types.SimpleNamespace(bundle=bundle, result=export_onnx(bundle, path), path=path)
        return done[key]

    return export


def _session(path, graph) -> ort.InferenceSession:
    return ort.InferenceSession(str(path / f"{graph.name}.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("key", list(MODELS))
def test_onnx_equals_eager_on_padded_mixed_lengths(key, exported):
    done = exported(key)
    bundle, result = done.bundle, done.result
    metadata = json.loads((done.path / "metadata.json").read_text())
    graphs = graphs_of(bundle.model)
    assert [c.graph for c in result.checks] == [g.name for g in graphs]
    for graph, check in zip(graphs, result.checks, strict=True):
        assert check.max_abs_diff <= 1e-4
        assert metadata["graphs"][graph.name]["check"]["max_abs_diff"] == check.max_abs_diff
        # a third size, neither traced nor checked with: batch 2, time 7, lengths mixed
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            args = graph.example(bundle.model, 2, 7, gen)
            want = graph.run(bundle.model, *args)
        session = _session(done.path, graph)
        got = session.run(None, {p.name: a.numpy() for p, a in zip(graph.inputs, args, strict=True)})
        assert [o.name for o in session.get_outputs()] == [p.name for p in graph.outputs]
        for w, g in zip(want, got, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-4)
    assert (done.path / "preprocessing.json").read_text().strip().startswith("{")


READERS = [
    "classifier-lstm-bi-attention",
    "tagger-mingru-bi-crf",
    "autoencoder-minlstm-bi",
    "ctc-rnn-bi-layernorm",
]


@pytest.mark.parametrize("key", READERS)
def test_backward_direction_starts_at_each_sequence_end(key, exported):
    """Padding after a short sequence must not reach the backward direction (nor the pooling, nor
    the autoencoder's code from the final states): its outputs equal the same sequence run alone,
    unpadded. Bidirectional encoders of both scan steps: LSTM, RNN with layer norm, minGRU, minLSTM."""
    done = exported(key)
    graph = graphs_of(done.bundle.model)[0]
    session = _session(done.path, graph)
    x, _ = graph.example(done.bundle.model, 2, 6, torch.Generator().manual_seed(3))
    if x.is_floating_point():
        x[1, 3:] = 100.0  # loud padding; token ids stay random ones
    padded = session.run(None, {"lengths": np.array([6, 3]), graph.inputs[0].name: x.numpy()})
    alone = session.run(None, {"lengths": np.array([3]), graph.inputs[0].name: x[1:, :3].numpy()})
    for port, p, a in zip(graph.outputs, padded, alone, strict=True):
        row = p[1, :3] if port.shape[1] == "T" else p[1]  # per-step outputs: the real steps
        np.testing.assert_allclose(row, a[0], atol=1e-5, err_msg=f"{key}: {port.name}")


def test_autoencoder_graph_scores_as_the_model_does(exported):
    """The graph's errors (computed from its one reconstruction) equal SequenceAutoencoder.errors."""
    done = exported("autoencoder-minlstm-bi")
    model, graph = done.bundle.model, graphs_of(done.bundle.model)[0]
    x, lengths = graph.example(model, 3, 8, torch.Generator().manual_seed(4))
    rebuilt, errors = _session(done.path, graph).run(None, {"inputs": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt, model(x, lengths).numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(errors, model.errors(x, lengths).numpy(), atol=1e-4, rtol=1e-4)
    assert (errors[lengths.numpy()[:, None] <= np.arange(8)] == 0).all()


def test_a_wrong_graph_is_refused_and_nothing_is_written(exported, tmp_path, monkeypatch):
    import rnnkit.export.onnx as module

    done = exported("autoencoder-minlstm-bi")

    def reuse(twin, graph, file, opset, seed):  # the module's own export of this model, not traced again
        shutil.copy(done.path / file.name, file)
        return {p.name: list(p.shape) for p in graph.inputs}

    monkeypatch.setattr(module, "_export", reuse)
    monkeypatch.setattr(module, "ATOL", -1.0)  # no graph can pass
    with pytest.raises(ExportError, match=r"differs from eager by .* nothing was written"):
        export_onnx(done.bundle, tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_a_bundle_and_refuses_what_it_cannot(tmp_path, capsys):
    config = {"name": "classifier", "vocab_size": 9, "num_classes": 2, "embedding_dim": 2, **TINY}
    data = {"path": str(tmp_path / "texts.csv")}
    save_bundle(tmp_path / "bundle", build_model(config), {"task": "classify", "data": data, "model": config})
    assert (
        main(["export", str(tmp_path / "bundle"), "--format", "onnx", "--output", str(tmp_path / "out")]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("model.onnx: onnxruntime vs eager on B=4, T=9 (mixed lengths): max |diff|")
    assert lines[-1].startswith(f"wrote {tmp_path / 'out'}: config.yaml, metadata.json, model.onnx")

    assert main(["export", str(tmp_path / "bundle"), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'; expected one of ['onnx']" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an rnnkit bundle" in err
    assert not (tmp_path / "x").exists()
