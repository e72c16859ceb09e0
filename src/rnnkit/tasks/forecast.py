"""Forecasting: a table of one or many series -> windows -> a Forecaster, judged against baselines.

The data comes from a file (CSV, TSV, parquet, JSON lines), a table a package ships
(``dataset: seattle_weather``, from vega_datasets) or a synthetic generator. Parts are split in
time (fractions, row counts or a date); scalers are fitted on the training part only; every
evaluation prints the model beside the last-value, seasonal-naive, drift and mean baselines over
the test part's rolling origins (one forecast from every test step, a backtest without refitting).
"""

from __future__ import annotations

import datetime
import functools
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from rnnkit.config import Config
from rnnkit.data import make_scaler, noisy_sine, seasonal_temperature
from rnnkit.data.scalers import LogScaler
from rnnkit.data.series import Columns, Series, load_series, split_points
from rnnkit.data.tables import read_table
from rnnkit.data.windows import (
    SeriesScaling,
    WindowDataset,
    Windows,
    collate_windows,
    make_windows,
    scaled_table,
)
from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import seasonal_scale
from rnnkit.tasks import ModelKeys, Predictor, Prepared, Task, register_task
from rnnkit.tasks.forecast_combine import MAX_COMBINED_SERIES, combined, fit_combination
from rnnkit.tasks.forecast_eval import (
    MAX_CLASSICAL_SERIES,
    combined_forecasts,
    evaluate,
    forecasts,
    metrics_table,
)

GENERATORS = {"sine": noisy_sine, "seasonal_temperature": seasonal_temperature}
Part = float | int | str  # a fraction of the rows, a number of rows, or the date the part starts


class SeriesDataConfig(Config):
    """Where the series comes from, which columns play which part, and how windows are cut."""

    path_keys: ClassVar = ("path",)  # relative paths in a config file are read from its folder
    kind: Literal["series"] = "series"
    path: str | None = Field(
        None, description="a .csv, .tsv, .parquet or .jsonl file (relative to the config file)"
    )
    dataset: Literal["seattle_weather"] | None = Field(None, description="a table a package ships")
    synthetic: Literal["sine", "seasonal_temperature"] | None = None
    synthetic_options: dict[str, float | int] = Field(default_factory=dict)
    time_column: str | None = None
    id_column: str | None = Field(None, description="many series stacked in one table, keyed by this column")
    targets: list[str] = Field(default_factory=lambda: ["value"], min_length=1)
    past_covariates: list[str] = Field(default_factory=list, description="observed up to now only")
    known_covariates: list[str] = Field(default_factory=list, description="known ahead, e.g. holidays")
    calendar: list[Literal["day_of_week", "day_of_year", "month", "hour"]] = Field(default_factory=list)
    missing: Literal["error", "ffill", "interpolate", "zero"] = "error"
    lookback: int = Field(10, gt=0)
    horizon: int = Field(1, gt=0)
    stride: int = Field(1, gt=0, description="steps between training windows")
    test: Part = Field(0.2, description="fraction, row count, or the date the test part starts")
    validation: Part = Field(0.0, description="the same, for the part just before the test part")
    scaler: Literal["none", "minmax", "standard", "robust"] = Field(
        "standard", description="fitted on the training part; none only for values already near [-1, 1]"
    )
    static_covariates: list[str] = Field(
        default_factory=list, description="numeric columns with one value per series (size, latitude ...)"
    )
    static_categoricals: list[str] = Field(
        default_factory=list,
        description="categorical columns with one value per series (region, type ...): embedded",
    )
    sample_weight: str | None = Field(
        None,
        description="a column of weights >= 0: training draws each window in proportion to the weight "
        "of its last observed row (e.g. a series' sales, or more for recent rows); none: all alike",
    )
    scale: Literal["global", "per_series"] = Field(
        "global",
        description="per_series: each series' targets and past covariates scaled by its own training "
        "rows (a new series by its own history); global: all by the training rows of all",
    )
    transform: Literal["none", "log"] = Field(
        "none", description="log: the targets' logarithm is modelled (positive series, proportional changes)"
    )
    season: int = Field(
        1, gt=0, description="seasonal naive lag and MASE scale, e.g. 7 or 365 for daily data"
    )
    classical: list[Literal["arima", "ets", "theta"]] | None = Field(
        None,
        description="statistical baselines fitted on each series' training part (statsmodels: "
        f"rnnkit[stats]); unset: all three for up to {MAX_CLASSICAL_SERIES} series, [] for none",
    )

    combine: list[Literal["arima", "ets"]] | None = Field(
        None,
        description="classical models whose forecasts the model's are averaged with, fitted on each series' "
        f"training part; unset: ARIMA where it is a classical baseline (unset: up to {MAX_COMBINED_SERIES} "
        "series), [] for none",
    )

    @field_validator("test", "validation", mode="before")
    @classmethod
    def _dates_as_text(cls, value):
        """YAML reads an unquoted 2015-01-01 as a date; a split date is kept as ISO text."""
        return value.isoformat() if isinstance(value, datetime.date) else value

    @field_validator("test", "validation")
    @classmethod
    def _valid_part(cls, value):
        if isinstance(value, str):
            try:
                pd.Timestamp(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a fraction, a row count or a date") from None
        elif isinstance(value, float) and not 0 <= value < 1:
            raise ValueError(f"a fraction must lie in [0, 1), got {value}")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.path, self.dataset, self.synthetic)) > 1:
            raise ValueError("set only one of data.path, data.dataset and data.synthetic")
        return self


def read_frame(config: SeriesDataConfig) -> pd.DataFrame:
    """The table the config names; a DataFrame can also go straight to :func:`prepare`."""
    if config.path is config.dataset is config.synthetic is None:
        raise DataError("no data: set data.path, data.dataset or data.synthetic (or pass a DataFrame)")
    if config.path is not None:  # only the columns used: numbers as float32, the id as a category
        columns = columns_of(config)
        numbers = [*columns.targets, *columns.past, *columns.known, *columns.static]
        numbers += [columns.weight] if columns.weight else []
        used = [c for c in (columns.id, columns.time) if c] + numbers + list(columns.categorical)
        return read_table(config.path, used, floats=numbers, categories=[columns.id] if columns.id else [])
    if config.dataset == "seattle_weather":
        try:
            from vega_datasets import data
        except ImportError:
            raise DataError(
                "dataset seattle_weather needs vega_datasets: pip install 'rnnkit[examples]'"
            ) from None
        return data.seattle_weather()
    generator = GENERATORS[config.synthetic]
    valid = set(inspect.signature(generator).parameters)
    unknown = sorted(set(config.synthetic_options) - valid)
    if unknown:
        raise ConfigError(
            f"data.synthetic_options: unknown option(s) {unknown} for {config.synthetic!r}; "
            f"valid options are {sorted(valid)}"
        )
    values = generator(**config.synthetic_options)
    if config.synthetic == "sine":
        return pd.DataFrame({"value": values})
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=len(values), freq="D"), "value": values})


def columns_of(config: SeriesDataConfig) -> Columns:
    return Columns(
        config.time_column,
        tuple(config.targets),
        tuple(config.past_covariates),
        tuple(config.known_covariates),
        config.id_column,
        config.sample_weight,
        tuple(config.static_covariates),
        tuple(config.static_categoricals),
    )


def _bounds(series: Series, config: SeriesDataConfig) -> tuple[int, int]:
    """(a, b): the validation part starts at row a and the test part at row b."""
    n = len(series.targets)
    test, validation = (_rows_from_end(series, p, n) for p in (config.test, config.validation))
    if isinstance(config.validation, str):  # a date: the validation part runs up to the test part
        test_rows = round(n * test) if isinstance(test, float) else test
        validation = validation - test_rows
    return split_points(n, test, validation)


def _rows_from_end(series: Series, part: Part, n: int) -> float | int:
    if not isinstance(part, str):
        return part
    if series.times is None:
        raise DataError(f"a split at the date {part!r} needs data.time_column")
    start = int(series.times.searchsorted(pd.Timestamp(part)))
    return n - start


@dataclass(kw_only=True)
class ForecastPrepared(Prepared):
    series: list[Series]  # every series, unscaled
    test_windows: Windows  # the evaluated windows, with each one's series and origin
    bounds: list[tuple[int, int]]  # per series: validation starts at row a, test at row b
    classical: tuple[str, ...] | None = None  # the classical baselines; None: all up to 20 series
    per_series: pd.DataFrame | None = None  # the last evaluation's scores, a row per series


def prepare(
    config: SeriesDataConfig,
    preprocessing: dict[str, Any] | None = None,
    frame: pd.DataFrame | str | Path | None = None,
    batch_size: int = 32,
) -> ForecastPrepared:
    """Windows for training, validation and test, cut in time as the config says.

    With a bundle's ``preprocessing`` its fitted scalers are used instead of fitting new ones; with
    ``frame`` as well (a table, or a file to read), all of it is the evaluated part: a backtest from
    the first step that has a full lookback, whatever the config's split.
    """
    whole = frame is not None and preprocessing is not None
    source = "" if frame is None or isinstance(frame, pd.DataFrame) else f" {frame}"
    frame = read_frame(config) if frame is None else frame
    frame = frame if isinstance(frame, pd.DataFrame) else read_table(frame)
    columns = columns_of(config) if not whole else replace(columns_of(config), weight=None)  # training's only
    all_series = load_series(frame, columns, tuple(config.calendar), config.missing)
    ends = [len(s.targets) for s in all_series]
    bounds = [(0, 0)] * len(all_series) if whole else [_bounds(s, config) for s in all_series]
    preprocessing = preprocessing or _fit_preprocessing(config, all_series, bounds)
    code_statics(all_series, preprocessing)
    table = scaled_table(all_series, SeriesScaling.from_state(preprocessing))  # every part reads this copy

    def cut(parts: list[tuple[int, int]], stride: int = 1):
        return make_windows(all_series, config.lookback, config.horizon, parts, stride=stride, table=table)

    test = cut([(b, n) for (_, b), n in zip(bounds, ends, strict=True)])
    if whole:
        part = (
            f"all of{source or ' the table'}: {len(test.origin)} forecast origins, "
            f"from the first with {config.lookback} steps of history"
        )
        return ForecastPrepared(
            train=None, validation=None, test=windows_dataset(test), preprocessing=preprocessing,
            series=all_series, test_windows=test, bounds=bounds, part=part, collate=collate_windows,
            classical=None if config.classical is None else tuple(config.classical),
        )  # fmt: skip
    validation = cut(bounds) if any(b > a for a, b in bounds) else None
    return ForecastPrepared(
        train=windows_dataset(cut([(0, a) for a, _ in bounds], config.stride)),
        validation=None if validation is None else windows_dataset(validation),
        test=windows_dataset(test),
        preprocessing=preprocessing,
        series=all_series,
        test_windows=test,
        bounds=bounds,
        part=f"test part: {len(test.origin)} forecast origins",
        collate=collate_windows,
        classical=None if config.classical is None else tuple(config.classical),
    )


def _fit_preprocessing(config: SeriesDataConfig, all_series: list[Series], bounds) -> dict[str, Any]:
    """Scalers and the MASE scale, from the training rows [0, a) of every series only."""
    train = [(s, a) for s, (a, _) in zip(all_series, bounds, strict=True)]
    if config.transform == "log":  # every row is transformed, not only the training part's
        for s in all_series:
            try:
                LogScaler(make_scaler("none")).transform(s.targets)
            except DataError as error:
                where = f"series {s.key!r}" if s.key else "the targets"
                raise DataError(f"data.transform log: {where}: {error}") from None
    scalers = {
        f: _fit_scaler(
            config.scaler, [getattr(s, f)[:a] for s, a in train], config.transform == "log" and f == "targets"
        )
        for f in ("targets", "past", "known")
    }
    mase = [
        float(np.mean([seasonal_scale(s.targets[:a, j], config.season) for s, a in train]))
        for j in range(len(config.targets))
    ]
    own = None
    if config.scale == "per_series":  # each series' targets and past covariates by its own training rows
        log = config.transform == "log"
        own = {
            s.key: {f: _fit_scaler(config.scaler, [getattr(s, f)[:a]], log and f == "targets").state_dict()
                    for f in ("targets", "past")}
            for s, a in train
        }  # fmt: skip
    return {
        "static_vocabulary": {  # each static categorical's categories in training; code 0: any other
            c: sorted({s.categories[i] for s in all_series}) for i, c in enumerate(config.static_categoricals)
        },
        "series_scalers": own,
        "combine": fit_combination(_combined_models(config), train, config.season),
        "columns": columns_of(config).__dict__,
        "calendar": list(config.calendar),
        "missing": config.missing,
        "lookback": config.lookback,
        "horizon": config.horizon,
        "season": config.season,
        "scalers": {k: v.state_dict() for k, v in scalers.items()},
        "mase_scale": mase,
    }


def code_statics(all_series: list[Series], preprocessing: dict[str, Any]) -> None:
    """Set each series' static categorical codes: 1 + the category's place in training's vocabulary,
    0 for a category training never saw."""
    vocabulary = preprocessing.get("static_vocabulary") or {}
    lookup = [{v: i + 1 for i, v in enumerate(values)} for values in vocabulary.values()]
    for s in all_series:
        s.codes = np.array([v.get(c, 0) for v, c in zip(lookup, s.categories, strict=True)], np.int64)


def _combined_models(config: SeriesDataConfig) -> list[str] | None:
    """``data.combine``; unset, None (ARIMA, if it can be fitted) where ARIMA is a classical baseline."""
    if config.combine is not None or config.classical is None or "arima" in config.classical:
        return config.combine
    return []


def _fit_scaler(name: str, parts: list[np.ndarray], log: bool = False):
    values = np.concatenate(parts)  # (N, F)
    if not values.shape[1]:
        return make_scaler("none")  # no columns: identity
    return (LogScaler(make_scaler(name)) if log else make_scaler(name)).fit(values)


def windows_dataset(windows: Windows) -> WindowDataset:
    return WindowDataset(windows)


# ---- plots and the task ------------------------------------------------------------------------


def plot_test(
    model: torch.nn.Module, prepared: ForecastPrepared, out_dir: Path, steps: list[int], index: int = 0,
    name: str = "forecast_step{k}.png",
):  # fmt: skip
    """For each step k: the evaluated part of series ``index`` (the first by default) with the model's
    k-step-ahead forecasts, their interval, and the persistence forecast, after the months before it;
    written to ``out_dir / name.format(k=k)``."""
    from rnnkit import plots

    windows, s = prepared.test_windows, prepared.series[index]
    pre = prepared.preprocessing
    mine = windows.series == index
    rows = np.flatnonzero(mine)
    unscale = functools.partial(windows.table.unscale, series=windows.series[rows])
    point, lower, upper = forecasts(model, torch.from_numpy(windows.inputs_of(rows)), pre, unscale=unscale)
    classical = combined_forecasts(prepared)  # the combined models', if any: all windows
    point, lower, upper = combined(point, lower, upper, [f[mine] for f in classical.values()])
    origins, target = windows.origin[mine], pre["columns"]["targets"][0]
    of = f" of series {s.key}" if len(prepared.series) > 1 else ""
    x_all = s.times if s.times is not None else np.arange(len(s.targets))
    start = max(0, origins[0] - 3 * max(pre["lookback"], 30))
    paths = []
    for k in sorted(set(steps)):
        x = x_all[origins + k]
        band = None if lower is None else (lower[:, k - 1, 0], upper[:, k - 1, 0])
        paths.append(
            plots.plot_forecast(
                (x_all[start : origins[0] + 1], s.targets[start : origins[0] + 1, 0]),
                (x, s.targets[origins + k, 0]),
                {f"model, {k} step(s) ahead": point[:, k - 1, 0], "persistence": s.targets[origins, 0]},
                x,
                out_dir / name.format(k=k),
                band=band,
                band_label="80% interval",
                title=f"{target}{of}: test part, forecasts made {k} step(s) ahead",
                ylabel=target,
            )
        )
    return paths


def sample_series(prepared: ForecastPrepared, max_series: int, seed: int) -> ForecastPrepared:
    """``prepared`` with its test windows of ``max_series`` series only, drawn with ``seed``."""
    windows = prepared.test_windows
    present = np.unique(windows.series)
    if len(present) <= max_series:
        return prepared
    chosen = np.sort(np.random.default_rng(seed).choice(present, max_series, replace=False))
    rows = np.isin(windows.series, chosen)
    kept = Windows(
        windows.table, windows.lookback, windows.horizon, windows.series[rows], windows.origin[rows]
    )
    part = f"{prepared.part}, of a sample of {max_series} of the {len(present)} series (evaluate.max_series)"
    return replace(prepared, test=windows_dataset(kept), test_windows=kept, part=part)


class ForecastTask(Task[SeriesDataConfig, ForecastPrepared]):
    """Forecast ``horizon`` steps of one or many series from the last ``lookback`` steps."""

    name = "forecast"
    data_config = SeriesDataConfig
    default_model = "forecaster"
    preprocessing_keys = ("columns", "lookback", "horizon", "season", "scalers")
    fitted_keys: ClassVar = {"static_cardinalities": "the categories of data.static_categoricals"}
    stand_ins: ClassVar = {"static_cardinalities": []}
    refits = True

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> ForecastPrepared:
        return prepare(config, preprocessing, path, batch_size)

    def model_keys(self, config: SeriesDataConfig, prepared=None) -> ModelKeys:
        """Window sizes and the column layout; RevIN on unless the model section says otherwise.

        RevIN is suggested here rather than made the model's default so that bundles saved before
        it existed (whose configs lack the key) still load as the plain forecasters they are. The
        choice comes from benchmarks/forecast_quality.py: over six classic series RevIN cut the
        mean MASE from 1.55 to 0.98 and won four of them against auto-ARIMA, the plain recipe one.
        """
        fixed = {
            "lookback": config.lookback,
            "horizon": config.horizon,
            "output_size": len(config.targets),
            "num_past": len(config.past_covariates),
            "num_known": len(config.known_covariates)
            + 2 * len(config.calendar)
            + len(config.static_covariates),
        }
        if prepared is not None:
            vocabulary = prepared.preprocessing.get("static_vocabulary") or {}
            fixed["static_cardinalities"] = [len(vocabulary[c]) + 1 for c in config.static_categoricals]
        return ModelKeys(fixed, suggested={"revin": True})

    def evaluate(self, model, prepared, predicted=None) -> dict[str, Any]:
        return evaluate(model, prepared, predicted)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir, config, metrics) -> list[Path]:
        """The test-part forecasts 1 step and the full horizon ahead of the first series (and of the
        model's worst series, by MASE, when there are several), and ``metrics_per_series.csv``."""
        first = int(prepared.test_windows.series[0])
        written = plot_test(model, prepared, out_dir, [1, config.horizon], first)
        if prepared.per_series is not None and len(prepared.per_series) > 1:
            written.append(out_dir / "metrics_per_series.csv")
            prepared.per_series.to_csv(written[-1], index=False, float_format="%.6g")
            column = next(c for c in prepared.per_series.columns if c.endswith("model_MASE"))
            worst = prepared.per_series.loc[prepared.per_series[column].idxmax(), "series"]
            index = next(i for i, s in enumerate(prepared.series) if s.key == worst)
            written += plot_test(
                model, prepared, out_dir, [config.horizon], index, "forecast_worst_step{k}.png"
            )
        return written

    def sample(self, prepared: ForecastPrepared, max_series: int, seed: int) -> ForecastPrepared:
        """``prepared`` to be evaluated on ``max_series`` of its series, drawn at random."""
        return sample_series(prepared, max_series, seed)

    def predictor(self, bundle) -> Predictor:
        from rnnkit.tasks.forecast_use import ForecastPredictor

        return ForecastPredictor(self, bundle)


register_task(ForecastTask())
