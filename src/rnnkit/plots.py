"""Plots written as PNG files (matplotlib, Agg backend; install with ``pip install 'rnnkit[plots]'``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rnnkit.errors import RnnkitError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RnnkitError("plots need matplotlib: pip install 'rnnkit[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(
    history: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "Loss",
    x: Sequence[float] | None = None,
    xlabel: str = "epoch",
) -> Path:
    """One line per named curve (e.g. {"train": [...], "validation": [...]}) against x (default 1, 2, ...)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1) if x is None else x, values, label=name, marker="." if x else None)
    positive = all(v > 0 for values in history.values() for v in values if v == v)  # NaN-safe
    ax.set(title=title, xlabel=xlabel, ylabel="loss", yscale="log" if positive else "linear")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_lines(
    curves: Mapping[str, Sequence[float]],
    x: Sequence[float],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """One line per named curve over the same ``x`` (e.g. recall@k against k for a model and baselines)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, values) in enumerate(curves.items()):
        ax.plot(x, values, marker=".", linestyle="-" if i == 0 else "--", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_predictions(
    actual: Sequence[float],
    predicted: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "Actual vs predicted",
    x: Sequence[float] | None = None,
    xlabel: str = "time step",
) -> Path:
    """The actual series and one line per named prediction (model, baselines) on the same axis."""
    plt = _pyplot()
    x = range(len(actual)) if x is None else x
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, actual, color="black", marker="o", markersize=3, label="actual")
    for name, values in predicted.items():
        ax.plot(x, values, marker=".", linestyle="--" if name != "model" else "-", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel="value")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_forecast(
    history: tuple[Sequence, Sequence],
    actual: tuple[Sequence, Sequence] | None,
    forecasts: Mapping[str, Sequence[float]],
    x: Sequence,
    path: str | Path,
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    band_label: str = "interval",
    title: str = "Forecast",
    ylabel: str = "value",
) -> Path:
    """History (x, y), the actual values and named forecasts over ``x``, and an interval band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(*history, color="0.55", linewidth=1, label="history")
    if band is not None:
        ax.fill_between(x, band[0], band[1], color="tab:blue", alpha=0.2, linewidth=0, label=band_label)
    if actual is not None:
        ax.plot(*actual, color="black", linewidth=1.2, label="actual")
    for i, (name, values) in enumerate(forecasts.items()):
        ax.plot(x, values, linewidth=1.2, linestyle="-" if i == 0 else "--", label=name)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_anomalies(
    signal: Sequence[float],
    scores: Sequence[float],
    threshold: float,
    flagged: Sequence[tuple[int, int]],
    labelled: Sequence[tuple[int, int]],
    path: str | Path,
    offset: int = 0,
    title: str = "Anomalies",
) -> Path:
    """The signal above its anomaly score and threshold; flagged events in red, labelled ones in grey."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, height_ratios=[2, 1])
    x = range(offset, offset + len(signal))
    top.plot(x, signal, color="black", linewidth=0.7)
    bottom.plot(x, scores, color="tab:blue", linewidth=0.7, label="score")
    bottom.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label="threshold")
    for axis in (top, bottom):
        for i, (start, end) in enumerate(labelled):
            axis.axvspan(
                offset + start,
                offset + end,
                color="0.8",
                label="labelled" if i == 0 and axis is top else None,
            )
        for i, (start, end) in enumerate(flagged):
            axis.axvspan(
                offset + start,
                offset + end,
                color="tab:red",
                alpha=0.3,
                label="flagged" if i == 0 and axis is top else None,
            )
    top.set(title=title, ylabel="signal (scaled)")
    bottom.set(xlabel="step", ylabel="score")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Counts with true classes down the rows and predicted classes across, each cell labelled."""
    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    image = ax.imshow(matrix, cmap="Blues")
    top = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            color = "white" if matrix[i][j] > top / 2 else "black"
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=color)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_attention(
    rows: Sequence[tuple[Sequence[str], Sequence[float], str]], path: str | Path, title: str = "Attention"
) -> Path:
    """One row per text: its tokens shaded by attention weight, with a label (e.g. the prediction).

    Weights are shaded times the text's length, so 1 is a uniform share whatever the length (weights
    sum to one per text: a long text's would otherwise all look pale).
    """
    plt = _pyplot()
    width = max(len(tokens) for tokens, _, _ in rows)
    fig, ax = plt.subplots(figsize=(min(0.55 * width + 3, 24), 0.6 * len(rows) + 1.2))
    grid = [[*(w * len(ws) for w in ws), *[float("nan")] * (width - len(ws))] for _, ws, _ in rows]
    top = max(2.0, max(max(row[: len(ws)]) for row, (_, ws, _) in zip(grid, rows, strict=True)))
    image = ax.imshow(grid, cmap="Oranges", aspect="auto", vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="weight x length (1 = uniform)")
    for i, (tokens, _, _) in enumerate(rows):
        for j, token in enumerate(tokens):
            ax.text(j, i, token, ha="center", va="center", fontsize=7)
    ax.set(yticks=range(len(rows)), xticks=[], title=title)
    ax.set_yticklabels([label for _, _, label in rows], fontsize=8)
    return _save(fig, path)


def plot_alignments(
    panels: Sequence[tuple[Sequence[str], Sequence[str], Sequence[Sequence[float]]]],
    path: str | Path,
    title: str = "Attention: where the decoder looked for each output token",
) -> Path:
    """One heat map per example: source tokens along x, output tokens along y, weights (T_out, S)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.8), squeeze=False)
    for ax, (source, output, weights) in zip(axes[0], panels, strict=True):
        image = ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(source)), source, fontsize=8)
        ax.set_yticks(range(len(output)), output, fontsize=8)
        ax.set_xlabel("source")
    axes[0][0].set_ylabel("output")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02, pad=0.02, label="weight")
    fig.suptitle(title)
    return _save(fig, path, tight=False)


def plot_piano_rolls(
    panels: Mapping[str, Sequence[Sequence[float]]], path: str | Path, steps_per_quarter: int = 1
) -> Path:
    """Piano rolls one above another: steps along x (in bars of four quarter notes), the lowest
    sounding key to the highest along y, darkness the note's value (on/off, or a probability)."""
    import numpy as np

    arrays = [np.asarray(p, dtype=float) for p in panels.values()]
    used = np.flatnonzero(np.any([a.max(0) > 0.05 for a in arrays], axis=0))
    low, high = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, arrays[0].shape[1])
    plt = _pyplot()
    fig, axes = plt.subplots(len(arrays), 1, figsize=(11, 2.4 * len(arrays)), squeeze=False)
    for ax, (title, array) in zip(axes[:, 0], zip(panels, arrays, strict=True), strict=True):
        bars = len(array) / (4 * steps_per_quarter)
        ax.imshow(
            array[:, low:high].T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
            extent=(0, bars, 21 + low - 0.5, 21 + high - 0.5), interpolation="nearest",
        )  # fmt: skip
        ax.set(title=title, ylabel="MIDI pitch")
    axes[-1, 0].set_xlabel("bar (4 quarter notes)")
    return _save(fig, path)


def plot_image_grid(
    panels: Sequence[tuple[Sequence[Sequence[float]], str]],
    path: str | Path,
    title: str = "",
    columns: int = 4,
) -> Path:
    """Small images in a grid, each over its caption (e.g. a digit with the true and generated texts);
    a caption may hold line breaks. Darker is larger (white 0 .. black the image's largest value)."""
    plt = _pyplot()
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 2.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, caption) in zip(axes.flat, panels, strict=False):
        ax.imshow(image, cmap="Greys", interpolation="nearest")
        ax.set_title(caption, fontsize=7.5, loc="left")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_heatmaps(panels: Mapping[str, Sequence[Sequence[float]]], path: str | Path, title: str = "") -> Path:
    """Panels one above another, each (rows, T) with steps along x, darker for larger (0 .. 1; NaN
    blank): e.g. a memory's read and write weightings over time, rows against steps."""
    import numpy as np

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    heights = [max(3, min(len(p), 40)) for p in panels.values()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9, 0.07 * sum(heights) + 0.6 * len(panels) + 0.8), squeeze=False,
        gridspec_kw={"height_ratios": heights}, sharex=True, layout="constrained",
    )  # fmt: skip
    for ax, (name, values) in zip(axes[:, 0], panels.items(), strict=True):
        image = np.asarray(values, dtype=float)
        ax.imshow(image, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return _save(fig, path, tight=False)


def _save(fig, path: str | Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
