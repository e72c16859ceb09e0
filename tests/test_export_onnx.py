"""ONNX export: every task model's graphs equal its eager outputs on padded batches of mixed lengths,
with another batch size and length than traced (dynamic axes), bidirectional encoders, every cell."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("key", list(MODELS))
def test_onnx_equals_eager_on_padded_mixed_lengths(key, tmp_path):
    bundle = _bundle(MODELS[key])
    result = export_onnx(bundle, tmp_path / "onnx")
    metadata = json.loads((tmp_path / "onnx" / "metadata.json").read_text())
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
        session = ort.InferenceSession(str(tmp_path / "onnx" / f"{graph.name}.onnx"))
        got = session.run(None, {p.name: a.numpy() for p, a in zip(graph.inputs, args, strict=True)})
        assert [o.name for o in session.get_outputs()] == [p.name for p in graph.outputs]
        for w, g in zip(want, got, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-4)
    assert (tmp_path / "onnx" / "preprocessing.json").read_text().strip().startswith("{")


def test_backward_direction_starts_at_each_sequence_end(tmp_path):
    """Padding after a short sequence must not reach the backward direction: its outputs equal the
    same sequence run alone, unpadded."""
    bundle = _bundle({"name": "ctc", "input_size": 2, "num_labels": 3, "cell": "lstm", "bidirectional": True})
    export_onnx(bundle, tmp_path / "onnx")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    x = torch.randn(2, 6, 2)
    x[1, 3:] = 100.0  # loud padding
    padded = session.run(None, {"inputs": x.numpy(), "lengths": np.array([6, 3])})[0]
    alone = session.run(None, {"inputs": x[1:, :3].numpy(), "lengths": np.array([3])})[0]
    np.testing.assert_allclose(padded[1, :3], alone[0], atol=1e-5)


def test_a_wrong_graph_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    import rnnkit.export.onnx as module

    monkeypatch.setattr(module, "ATOL", -1.0)  # no graph can pass
    with pytest.raises(ExportError, match=r"differs from eager by .* nothing was written"):
        export_onnx(_bundle(MODELS["autoencoder-minlstm-bi"]), tmp_path / "onnx")
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
