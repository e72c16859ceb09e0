"""Examples for the caption task: features with a short text each, from the files users have, and
scikit-learn's 8x8 digits described by a template measured from their pixels.

    examples = read_examples("shapes.npz", config)   # features (N, F) or images (N, h, w), texts (N,)
    texts = describe_digits(images, digits, ink_cuts(train_images), slant_threshold=0.1)

The template is "a {ink} {name} {slant}": the digit's name, its total ink in thirds of the training
part's (cut at its 1/3 and 2/3 quantiles), and its slant from the image moments (-mu11/mu02;
leaning beyond ``slant_threshold``). :mod:`rnnkit.tasks.caption` uses both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rnnkit.errors import DataError


class TextColumns(Protocol):
    """Which columns of a table hold the texts, the labels to stratify by and the features."""

    text_column: str
    label_column: str | None
    feature_columns: list[str] | None


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INK_WORDS = ("thin", "medium", "thick")
SLANT_WORDS = ("leaning left", "upright", "leaning right")
TEMPLATE = re.compile(rf"^a ({'|'.join(INK_WORDS)}) ({'|'.join(DIGIT_NAMES)}) ({'|'.join(SLANT_WORDS)})$")
TABLES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


@dataclass
class Examples:
    """Features (N, F) float64, their texts (or None), labels to stratify by, images to draw (or None)."""

    features: np.ndarray
    texts: list[str] | None
    labels: list[str] | None = None
    images: np.ndarray | None = None


# ---- the digits and their template -------------------------------------------------------------


def ink(images: np.ndarray) -> np.ndarray:
    """(N, h, w) pixel values -> (N,) the total ink of each image."""
    return images.sum((1, 2))


def slant(images: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (N,) -mu11 / mu02: pixels the ink moves right per pixel up (0 for a blank image)."""
    ys, xs = np.mgrid[0 : images.shape[1], 0 : images.shape[2]]  # (h, w) each
    mass = np.maximum(images.sum((1, 2)), 1e-12)  # (N,)
    cx = (images * xs).sum((1, 2)) / mass  # (N,)
    cy = (images * ys).sum((1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]  # (N, h, w)
    mu11 = (images * dx * dy).sum((1, 2)) / mass
    mu02 = (images * dy**2).sum((1, 2)) / mass
    return np.where(mu02 > 0, -mu11 / np.maximum(mu02, 1e-12), 0.0)


def ink_cuts(images: np.ndarray) -> list[float]:
    """The training part's 1/3 and 2/3 quantiles of ink, where thin, medium and thick meet."""
    return [float(q) for q in np.quantile(ink(images), [1 / 3, 2 / 3])]


def describe_digits(
    images: np.ndarray, digits: np.ndarray, cuts: list[float], slant_threshold: float = 0.1
) -> list[str]:
    """Each image's "a {ink} {name} {slant}" (module docs): images (N, h, w), digits (N,) 0-9."""
    inks = np.searchsorted(cuts, ink(images), side="right")  # (N,) 0, 1, 2
    shear = slant(images)  # (N,)
    leans = 1 + (shear > slant_threshold).astype(int) - (shear < -slant_threshold).astype(int)  # 0, 1, 2
    return [
        f"a {INK_WORDS[i]} {DIGIT_NAMES[int(d)]} {SLANT_WORDS[s]}"
        for i, d, s in zip(inks, digits, leans, strict=True)
    ]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) float64 0-16, digits (1797,)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("dataset digits needs scikit-learn: pip install 'rnnkit[caption]'") from None
    bunch = sklearn_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(int)


# ---- files of your own ---------------------------------------------------------------------------


def read_examples(path: str | Path, config: TextColumns, texts: bool = True) -> Examples:
    """Features and texts from an .npz or a table (module docs); ``texts=False`` reads features only."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if path.suffix.lower() == ".npz":
        return _read_npz(path, texts)
    if path.suffix.lower() in TABLES:
        return _read_table(path, config, texts)
    raise DataError(f"cannot read {path.name}: give an .npz (features, texts) or a table {list(TABLES)}")


def _read_npz(path: Path, texts: bool) -> Examples:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: np.asarray(arrays[key]) for key in arrays.files}
    except (ValueError, OSError) as error:  # not a zip, or pickled objects
        raise DataError(f"{path} cannot be read as an .npz of plain arrays: {error}") from None
    images = found.get("images")
    if images is not None and images.ndim != 3:
        raise DataError(f"{path}: images must be (N, h, w), got shape {images.shape}")
    features = found.get("features", None if images is None else images.reshape(len(images), -1))
    if features is None or (texts and "texts" not in found):
        needed = ["features (or images)", *(["texts"] if texts else [])]
        raise DataError(f"{path} needs the arrays {needed}; it has {sorted(found)}")
    n = len(features)
    for key in ("texts", "labels", "images"):
        if key in found and (found[key].shape[:1] != (n,) or (key != "images" and found[key].ndim != 1)):
            raise DataError(
                f"{path}: {key} must have one entry per example ({n}), got shape {found[key].shape}"
            )
    text = [str(x) for x in found["texts"]] if texts else None
    labels = [str(x) for x in found["labels"]] if "labels" in found else None
    return _checked(Examples(features, text, labels, images), path)


def _read_table(path: Path, config: TextColumns, texts: bool) -> Examples:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    from rnnkit.data.tables import read_table, require_columns

    frame = read_table(path)
    named = [c for c in (config.text_column, config.label_column) if c is not None]
    columns = config.feature_columns or [c for c in frame.columns if c not in named]
    require_columns(frame, [*columns, *(named if texts else [])], str(path))
    bad = [c for c in columns if not is_numeric_dtype(frame[c]) or is_bool_dtype(frame[c])]
    if bad:
        raise DataError(
            f"{path}: feature column(s) {bad} are not numbers; name the features with data.feature_columns, "
            f"the texts with data.text_column ({config.text_column!r})"
        )
    labels = (
        None if config.label_column is None or not texts else frame[config.label_column].astype(str).tolist()
    )
    text = frame[config.text_column].astype(str).tolist() if texts else None
    return _checked(Examples(frame[columns].to_numpy(np.float64), text, labels), path)


def _checked(examples: Examples, source: Path) -> Examples:
    features = np.asarray(examples.features)
    if features.ndim != 2 or 0 in features.shape or not np.issubdtype(features.dtype, np.number):
        raise DataError(f"{source}: features must be (N >= 1, F >= 1) numbers, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise DataError(f"{source}: the features hold NaN or infinity; fill them before training")
    examples.features = features.astype(np.float64)
    return examples
