"""Windows over time series: sliding windows of one array, a split that keeps time order, and the
lazy windows of many series a forecaster trains on (one scaled table, windows gathered from
(series, origin) pairs a batch at a time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit.data.batch import Batch, stack_pairs
from rnnkit.data.scalers import Scaler, scaler_from_state
from rnnkit.errors import DataError

if TYPE_CHECKING:  # series reads tables with pandas, which importing rnnkit.data does not load
    from rnnkit.data.series import Series


def sliding_windows(
    series: np.ndarray, lookback: int, horizon: int = 1, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """series (N,) or (N, F) -> inputs (S, lookback, F) and targets (S, horizon, F).

    Window s reads steps [s*stride, s*stride + lookback) and its target is the ``horizon`` steps
    right after it, so no target ever lies inside its own input.
    """
    values = np.asarray(series)
    values = values[:, None] if values.ndim == 1 else values  # (N, F)
    if values.ndim != 2:
        raise DataError(f"series must be (N,) or (N, F), got shape {np.shape(series)}")
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values).any(axis=1))[:5].tolist()
        raise DataError(f"series has NaN at rows {rows}...: fill or drop them before windowing")
    for name, v in (("lookback", lookback), ("horizon", horizon), ("stride", stride)):
        if v < 1:
            raise DataError(f"{name} must be >= 1, got {v}")
    n = len(values) - lookback - horizon + 1
    if n < 1:
        raise DataError(
            f"series of {len(values)} steps is too short for lookback {lookback} + horizon {horizon}"
        )
    starts = np.arange(0, n, stride)  # (S,)
    inputs = values[starts[:, None] + np.arange(lookback)]  # (S, lookback, F)
    targets = values[starts[:, None] + lookback + np.arange(horizon)]  # (S, horizon, F)
    return inputs, targets


def split_by_time(n: int, train_fraction: float) -> tuple[slice, slice]:
    """Slices for the first ``train_fraction`` of n items and the rest, in time order, never shuffled."""
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    cut = round(n * train_fraction)
    if cut < 1 or cut >= n:
        raise DataError(f"{n} items cannot be split {train_fraction:.0%}/{1 - train_fraction:.0%} in time")
    return slice(0, cut), slice(cut, n)


class SeriesScaling:
    """How a forecast's columns are scaled: three shared scalers (targets, past and known covariates),
    and with per-series scaling each series' own target and past scalers, fitted on that series'
    training rows. A series never seen in training gets scalers of the same kind fitted on the rows
    it comes with (its own history: a cold start); known covariates are always scaled alike.

        scaling = SeriesScaling.from_state(preprocessing)       # as a bundle keeps it
        targets, past, known = scaling.of(series)
    """

    def __init__(self, targets: Scaler, past: Scaler, known: Scaler, own: dict | None = None) -> None:
        self.shared = (targets, past, known)
        self.own = own  # key -> (targets, past) scalers; None: one scaling for every series

    @classmethod
    def from_state(cls, preprocessing: dict) -> SeriesScaling:
        """From a forecast's preprocessing: ``scalers`` (shared) and ``series_scalers`` (per series)."""
        shared = [scaler_from_state(preprocessing["scalers"][f]) for f in ("targets", "past", "known")]
        own = preprocessing.get("series_scalers")
        if own is not None:
            own = {
                key: (scaler_from_state(s["targets"]), scaler_from_state(s["past"])) for key, s in own.items()
            }
        return cls(*shared, own)

    @property
    def per_series(self) -> bool:
        return self.own is not None

    def of(self, s: Series) -> tuple[Scaler, Scaler, Scaler]:
        """Series ``s``'s (targets, past, known) scalers."""
        if self.own is None:
            return self.shared
        if s.key not in self.own:  # a new series: scaled by its own history
            self.own[s.key] = (self.fresh(0, s.targets), self.fresh(1, s.past))
        return (*self.own[s.key], self.shared[2])

    def fresh(self, group: int, values: np.ndarray) -> Scaler:
        """A scaler of the shared one's kind (group 0: targets, 1: past) fitted on ``values``."""
        scaler = scaler_from_state(self.shared[group].state_dict())
        return scaler.fit(values) if values.shape[1] else scaler


@dataclass
class SeriesTable:
    """Every series' scaled columns once, one series after another: what windows are read from.

    values (R, D) float32, D = targets + past + known columns (calendar features last), R the rows of
    all series; series i holds rows ``offsets[i]`` to ``offsets[i + 1]`` and was scaled with
    ``target_scalers[i]`` (one object for all series unless each has its own).
    """

    values: np.ndarray  # (R, D)
    offsets: np.ndarray  # (n_series + 1,) int64
    n_targets: int
    n_observed: int  # targets + past covariates: the columns a window's horizon rows leave at zero
    target_scalers: list  # (n_series,) the scaler of each series' targets

    def unscale(self, values: np.ndarray, series: np.ndarray) -> np.ndarray:
        """``values`` (S, ..., n_targets) of windows of ``series`` (S,) in the targets' own units."""
        shape, n = values.shape, values.shape[-1]
        first_scaler = self.target_scalers[0]
        if all(scaler is first_scaler for scaler in self.target_scalers):
            return first_scaler.inverse_transform(values.reshape(-1, n)).reshape(shape)
        out = np.empty(shape, values.dtype if values.dtype in (np.float32, np.float16) else np.float64)
        order = np.argsort(series, kind="stable")
        found, first = np.unique(series[order], return_index=True)
        for i, rows in zip(found, np.split(order, first[1:]), strict=True):
            part = values[rows].reshape(-1, n)
            out[rows] = self.target_scalers[i].inverse_transform(part).reshape((len(rows), *shape[1:]))
        return out


def scaled_table(all_series: list[Series], scaling: SeriesScaling) -> SeriesTable:
    """The :class:`SeriesTable` of ``all_series``, each column group scaled by ``scaling``, written
    straight into one float32 array (no second copy of the table)."""
    first = all_series[0]
    n_targets, n_observed = first.targets.shape[1], first.targets.shape[1] + first.past.shape[1]
    n_codes = len(first.codes)  # static categoricals' codes: the last columns, never scaled
    D = n_observed + first.known.shape[1] + n_codes
    offsets = np.concatenate([[0], np.cumsum([len(s.targets) for s in all_series])]).astype(np.int64)
    values = np.empty((int(offsets[-1]), D), np.float32)
    target_scalers = []
    for s, a, b in zip(all_series, offsets[:-1], offsets[1:], strict=True):
        targets, past, known = scaling.of(s)
        values[a:b, :n_targets] = targets.transform(s.targets)
        values[a:b, n_targets:n_observed] = past.transform(s.past)
        values[a:b, n_observed : D - n_codes] = known.transform(s.known)
        values[a:b, D - n_codes :] = s.codes
        target_scalers.append(targets)
    return SeriesTable(values, offsets, n_targets, n_observed, target_scalers)


@dataclass
class Windows:
    """Windows of every series as (series, origin) pairs over one :class:`SeriesTable`: nothing is
    copied until rows are asked for, so a part of the data costs 16 bytes a window, not L + H rows.

    ``inputs_of(rows)`` (k, L + H, D) and ``targets_of(rows)`` (k, H, n_targets) build the windows
    ``rows`` (indices into this part) with one gather each; ``inputs`` and ``targets`` build all of
    them (small parts and tests).
    """

    table: SeriesTable
    lookback: int
    horizon: int
    series: np.ndarray  # (S,) index into the list of series
    origin: np.ndarray  # (S,) row of the last observed step in its series
    weights: np.ndarray | None = None  # (S,) each window's sample weight: its origin row's

    def __len__(self) -> int:
        return len(self.origin)

    def _last_rows(self, rows) -> np.ndarray:
        return self.table.offsets[self.series[rows]] + self.origin[rows]  # (k,) rows of the table

    def inputs_of(self, rows=slice(None)) -> np.ndarray:
        """The input windows ``rows`` (k, L + H, D): L observed rows, then H rows where only the
        known covariates are filled and the targets and past covariates are zero."""
        L, H = self.lookback, self.horizon
        window = self.table.values[self._last_rows(rows)[:, None] + np.arange(1 - L, H + 1)]  # (k, L + H, D)
        window[:, L:, : self.table.n_observed] = 0.0  # the future is unknown but for known covariates
        return window

    def targets_of(self, rows=slice(None)) -> np.ndarray:
        """The targets of the windows ``rows`` (k, H, n_targets)."""
        ahead = self._last_rows(rows)[:, None] + np.arange(1, self.horizon + 1)  # (k, H)
        return self.table.values[ahead, : self.table.n_targets]

    @property
    def inputs(self) -> np.ndarray:
        return self.inputs_of()

    @property
    def targets(self) -> np.ndarray:
        return self.targets_of()


class WindowDataset(Dataset):
    """:class:`Windows` as a dataset of (inputs, targets) pairs; a DataLoader's batch is built with one
    gather (``__getitems__``), not a window at a time. Collate with :func:`collate_windows`."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def weights(self) -> np.ndarray | None:
        """Each window's sample weight (the trainer draws windows in proportion), or None."""
        return self.windows.weights

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rows = np.array([index])
        return torch.from_numpy(self.windows.inputs_of(rows)[0]), torch.from_numpy(
            self.windows.targets_of(rows)[0]
        )

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """All windows as (inputs, targets) tensors, as a TensorDataset's (small parts only)."""
        return torch.from_numpy(self.windows.inputs), torch.from_numpy(self.windows.targets)

    def __getitems__(self, indices) -> Batch:
        rows = np.asarray(indices, dtype=np.int64)
        return Batch(
            torch.from_numpy(self.windows.inputs_of(rows)), torch.from_numpy(self.windows.targets_of(rows))
        )


def collate_windows(data) -> Batch:
    """A DataLoader's collate for :class:`WindowDataset`: its batches come built; pairs are stacked."""
    return data if isinstance(data, Batch) else stack_pairs(data)


def make_windows(
    all_series: list[Series],
    lookback: int,
    horizon: int,
    bounds: list[tuple[int, int]],
    target_scaler: Scaler | None = None,
    past_scaler: Scaler | None = None,
    known_scaler: Scaler | None = None,
    stride: int = 1,
    table: SeriesTable | None = None,
) -> Windows:
    """Windows whose target rows lie in [start, end) of each series; bounds (start, end) per series.

    ``table``: the series scaled once (:func:`scaled_table`), shared by every part; without it the
    scalers make one."""
    if table is None:
        table = scaled_table(all_series, SeriesScaling(target_scaler, past_scaler, known_scaler))
    series, origins = [], []
    for index, (start, end) in enumerate(bounds):
        first = max(start, lookback)  # the first target row of a window
        found = np.arange(first - 1, end - horizon, stride)  # (S_i,) last observed rows
        series.append(np.full(found.size, index))
        origins.append(found)
    origin = np.concatenate(origins).astype(np.int64) if origins else np.zeros(0, np.int64)
    if origin.size == 0:
        raise DataError(
            f"no window of lookback {lookback} + horizon {horizon} fits in this part of the data: "
            "shorten the windows, or give the part more rows"
        )
    weights = None
    if all(s.weights is not None for s in all_series):
        weights = np.concatenate([all_series[i].weights[o] for i, o in enumerate(origins)])
    return Windows(table, lookback, horizon, np.concatenate(series).astype(np.int64), origin, weights)
