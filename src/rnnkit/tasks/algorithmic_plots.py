"""The algorithmic task's plots: bits wrong by length, and an NTM's heads over one example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rnnkit import plots
from rnnkit.data.algorithmic import Example


def plot_errors(metrics: dict[str, Any], path: Path) -> Path:
    """Bits wrong per sequence against the tested length: the model beside the all-zeros baseline."""
    lengths = metrics["lengths"]
    curves = {
        label: [metrics["bits_wrong"][who][str(n)] for n in lengths]
        for who, label in (("model", "model"), ("all_zeros", "all zeros"))
    }
    low, high = metrics["trained_lengths"]
    unit = "items" if metrics["problem"] == "associative_recall" else "length"
    title = f"{metrics['problem']}: bits wrong per sequence (trained on {unit} {low} .. {high})"
    return plots.plot_lines(curves, lengths, path, f"tested {unit}", "bits wrong per sequence", title)


@torch.no_grad()
def plot_memory(model, example: Example, path: Path, title: str) -> Path:
    """One example's inputs, targets and outputs, and the first memory layer's write and read weightings
    over time (memory rows against steps), each head its own panel, as the NTM paper's figures 4-6."""
    inputs = example.inputs.to(next(model.parameters()).device)[None]  # (1, T, D)
    outputs = model.predict(inputs)[0].cpu()  # (T, O)
    state = model.memory_trace(inputs)[0]  # fields (T, 1, width)
    N = model.config.memory_rows
    targets = example.targets.masked_fill(~example.mask.unsqueeze(-1), float("nan"))  # (T, O)
    panels = {"inputs": example.inputs.T, "targets (output steps)": targets.T, "outputs": outputs.T}
    for kind, weights in (("write", state.write_weights), ("read", state.read_weights)):
        heads = weights[:, 0].cpu().view(len(weights), -1, N)  # (T, heads, N)
        for h in range(heads.shape[1]):
            panels[f"{kind} weighting" + (f" (head {h})" if heads.shape[1] > 1 else "")] = heads[:, h].T
    return plots.plot_heatmaps(panels, path, title)
