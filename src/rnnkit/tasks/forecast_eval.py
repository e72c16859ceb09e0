"""The forecast task's evaluation: the model's backtest beside the naive and classical baselines.

Every metric is computed in the targets' own units over the test part's rolling origins; the table
ranks each row by MASE, and an ensemble's members' spread is reported beside it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from rnnkit.classical import CLASSICAL, classical_forecasts
from rnnkit.data import scaler_from_state
from rnnkit.errors import DataError
from rnnkit.metrics import BASELINES, baseline, baselines_of_many, forecast_metrics, seasonal_scale
from rnnkit.tasks.forecast_combine import combined, describe, window_forecasts

if TYPE_CHECKING:
    from rnnkit.data.windows import Windows
    from rnnkit.tasks.forecast import ForecastPrepared

MAX_CLASSICAL_SERIES = 20  # one ARIMA search a series takes seconds: more only when asked for


def forecasts(
    model: torch.nn.Module, inputs: torch.Tensor, preprocessing: dict[str, Any] | None, level: float = 0.8,
    unscale=None,
):  # fmt: skip
    """(point, lower, upper) in the targets' own units, each (S, H, n_targets); no bounds for point models.

    ``unscale(values)`` maps the model's scaled outputs back (by default the shared target scaler of
    ``preprocessing``: windows scaled per series pass their own)."""
    device = next(model.parameters()).device
    if unscale is None:
        target_scaler = scaler_from_state(preprocessing["scalers"]["targets"])
        unscale = functools.partial(_unscale, target_scaler)
    if getattr(model.config, "distribution", "point") == "point":
        outputs = [model.predict(inputs.to(device)), None, None]
    else:
        outputs = list(model.predict_interval(inputs.to(device), level=level))
    return [None if o is None else unscale(o.cpu().numpy()) for o in outputs]


def _unscale(scaler, values: np.ndarray) -> np.ndarray:
    return scaler.inverse_transform(values.reshape(-1, values.shape[-1])).reshape(values.shape)


def evaluate(
    model: torch.nn.Module, prepared: ForecastPrepared, predicted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Metrics of the model and the baselines at horizon 1 and H (and over all steps), per target.

    ``predicted``: the model's forecasts of the evaluated windows made elsewhere (a backtest that
    refits, :mod:`rnnkit.refit`), as :func:`model_forecasts` returns them; by default ``model``'s.
    """
    windows, pre = prepared.test_windows, prepared.preprocessing
    predicted = predicted or model_forecasts(model, windows, pre)
    recurrent, lower, upper, members = (predicted[k] for k in ("point", "lower", "upper", "members"))
    H, names = pre["horizon"], pre["columns"]["targets"]
    combination = pre.get("combine")
    done = combined_forecasts(prepared)
    point, lower, upper = combined(recurrent, lower, upper, list(done.values()))
    classical = classical_baselines(prepared, done)
    actual = windows.table.unscale(windows.targets, windows.series)  # (S, H, n_t)
    results: dict[str, Any] = {
        "part": prepared.part, "windows": len(actual), "horizon": H, "season": pre["season"],
        "skipped": dict(classical["skipped"]), "combination": describe(combination),
    }  # fmt: skip
    steps = {"h1": [0], f"h{H}": [H - 1], "all": list(range(H))} if H > 1 else {"h1": [0]}
    tables = []
    for j, name in enumerate(names):
        guesses = {"model": point[..., j]}
        if done:
            guesses["recurrent"] = recurrent[..., j]
        for b in BASELINES:
            try:
                guesses[b] = _per_series(prepared, j, b)
            except DataError as error:  # e.g. a file shorter than a season before its first origin
                results["skipped"][b] = str(error)
        guesses.update({b: f[..., j] for b, f in classical["forecasts"].items()})
        for key, cols in steps.items():
            results.setdefault(name, {})[key] = {
                who: forecast_metrics(
                    actual[:, cols, j],
                    g[:, cols],
                    pre["mase_scale"][j],
                    *((lower[:, cols, j], upper[:, cols, j]) if who == "model" and lower is not None else ()),
                )
                for who, g in guesses.items()
            }
        table, summary = per_series_scores(prepared, actual[..., j], guesses, j)
        tables.append(table.add_prefix(f"{name}/" if len(names) > 1 else ""))
        if summary is not None:
            results.setdefault("per_series", {})[name] = summary
        if members is not None:  # the spread of an ensemble: each member's MASE over all steps
            scores = [
                forecast_metrics(actual[..., j], m[..., j], pre["mase_scale"][j])["MASE"] for m in members
            ]
            results.setdefault("members", {})[name] = scores
    prepared.per_series = pd.concat(tables, axis=1).reset_index(names="series")
    return results


QUANTILES = (0.1, 0.5, 0.9)
WORST = 5  # series named in the summary


def per_series_scores(
    prepared: ForecastPrepared, actual: np.ndarray, guesses: dict[str, np.ndarray], j: int
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Each evaluated series' scores over all steps of target ``j``: every forecaster's MASE (scaled by
    that series' own in-sample seasonal naive error, the M4 and M5 way), the model's MAE and sMAPE,
    as a table indexed by the series' keys; and their summary (None for one series).

    actual (S, H) and each of ``guesses`` (S, H): the evaluated windows' values, series by series."""
    windows = prepared.test_windows
    found, first = np.unique(windows.series, return_index=True)  # windows come series by series
    counts = np.diff([*first, len(windows)]) * actual.shape[1]  # (n,) values scored a series
    scales = np.array(
        [_own_scale(prepared, i, j, o) for i, o in zip(found, windows.origin[first], strict=True)]
    )

    def mean(per_window: np.ndarray) -> np.ndarray:  # (S,) -> (n,): each series' mean per scored value
        return np.add.reduceat(per_window, first) / counts

    table = {"windows": counts // actual.shape[1]}
    for who, guess in guesses.items():
        errors = np.abs(guess - actual)  # (S, H)
        table[f"{who}_MASE"] = mean(errors.sum(1)) / scales
        if who == "model":
            table["model_MAE"] = mean(errors.sum(1))
            size = np.abs(guess) + np.abs(actual)
            table["model_sMAPE"] = mean((200 * errors / np.where(size > 0, size, 1)).sum(1))
    frame = pd.DataFrame(table, index=pd.Index([prepared.series[i].key for i in found], name="series"))
    if len(found) < 2:
        return frame, None
    model = frame["model_MASE"]
    worst = model.nlargest(WORST)
    summary = {
        "series": len(found),
        "MASE": {
            who: {
                "mean": float(frame[f"{who}_MASE"].mean()),
                **{f"q{round(100 * q)}": float(frame[f"{who}_MASE"].quantile(q)) for q in QUANTILES},
            }
            for who in guesses
        },
        "model_beats": {
            who: float((model < frame[f"{who}_MASE"]).mean()) for who in guesses if who != "model"
        },
        "worst": [{"series": key, "MASE": float(value)} for key, value in worst.items()],
    }
    return frame, summary


def _own_scale(prepared: ForecastPrepared, i: int, j: int, first_origin: int) -> float:
    """Series i's in-sample seasonal naive MAE of target j (its training rows, or those up to its first
    evaluated origin); the data's MASE scale where the series is shorter than a season."""
    pre = prepared.preprocessing
    a = prepared.bounds[i][0]
    end = a if a > 0 else int(first_origin) + 1
    try:
        return seasonal_scale(prepared.series[i].targets[:end, j], pre["season"])
    except DataError:
        return pre["mase_scale"][j]


def combined_forecasts(prepared: ForecastPrepared) -> dict[str, np.ndarray]:
    """The forecasts (S, H, n_t) of the evaluated windows by each classical model the forecaster is
    combined with (:mod:`rnnkit.tasks.forecast_combine`); {} for a forecaster alone."""
    combination = prepared.preprocessing.get("combine")
    if not combination or not combination["models"]:
        return {}
    windows, H = prepared.test_windows, prepared.preprocessing["horizon"]
    fit_ends = [
        a if a > 0 else int(windows.origin[windows.series == i].min(initial=0)) + 1
        for i, (a, _) in enumerate(prepared.bounds)
    ]
    return window_forecasts(combination, prepared.series, windows, fit_ends, H)


def classical_baselines(
    prepared: ForecastPrepared, done: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """The classical models' forecasts of the evaluated windows, {"forecasts": {name: (S, H, n_t)},
    "skipped": {name: why}}; those in ``done`` (the combined models') are taken from it, not refitted."""
    names = _classical_names(prepared)
    out: dict[str, Any] = {"forecasts": {}, "skipped": {}}
    if names is None:
        n = len(prepared.series)
        why = f"one fit per series, {n} here; set data.classical to fit them"
        out["skipped"]["classical baselines"] = why
        return out
    for b in names:
        if done and b in done:
            out["forecasts"][b] = done[b]
            continue
        try:
            targets = range(len(prepared.preprocessing["columns"]["targets"]))
            out["forecasts"][b] = np.stack([_per_series(prepared, j, b) for j in targets], axis=-1)
        except DataError as error:
            out["skipped"][b] = str(error)
    return out


def _classical_names(prepared: ForecastPrepared) -> tuple[str, ...] | None:
    """The classical baselines to fit; None when unset and there are too many series to fit each."""
    if prepared.classical is not None:
        return tuple(prepared.classical)
    return CLASSICAL if len(prepared.series) <= MAX_CLASSICAL_SERIES else None


def _per_series(prepared: ForecastPrepared, j: int, name: str) -> np.ndarray:
    """Baseline ``name``'s forecasts (S, H) of target ``j`` from every evaluated window: the naive
    ones for all series at once, a classical model fitted series by series."""
    windows, pre = prepared.test_windows, prepared.preprocessing
    H, season = pre["horizon"], pre["season"]
    if name in BASELINES:
        values = np.concatenate([s.targets[:, j] for s in prepared.series])  # (R,) in the targets' units
        return baselines_of_many(
            name, values, windows.table.offsets, windows.series, windows.origin, H, season
        )
    found, first = np.unique(windows.series, return_index=True)  # windows come series by series
    ends = [*first[1:], len(windows)]
    return np.concatenate(
        [
            _baseline(
                name, prepared.series[i].targets[:, j], windows.origin[a:b], prepared.bounds[i], H, season
            )
            for i, a, b in zip(found, first, ends, strict=True)
        ]
    )


def model_forecasts(
    model: torch.nn.Module, windows: Windows, pre: dict[str, Any], rows=None, batch_size: int = 4096
) -> dict[str, Any]:
    """The model's forecasts of ``windows`` (those ``rows`` only, when given) in the targets' units:
    point, lower and upper (S, H, n_t; no bounds for point models) and an ensemble's members' points
    (M, S, H, n_t) or None. The windows are built and read ``batch_size`` at a time."""
    rows = np.arange(len(windows)) if rows is None else np.asarray(rows)
    parts = []
    for start in range(0, max(len(rows), 1), batch_size):
        chunk = rows[start : start + batch_size]
        inputs = torch.from_numpy(windows.inputs_of(chunk))
        unscale = functools.partial(windows.table.unscale, series=windows.series[chunk])
        point, lower, upper = forecasts(model, inputs, pre, unscale=unscale)
        parts.append((point, lower, upper, _member_points(model, inputs, unscale)))
    joined = [
        None if p[0] is None else np.concatenate(p, axis=int(i == 3))
        for i, p in enumerate(zip(*parts, strict=True))
    ]
    return dict(zip(("point", "lower", "upper", "members"), joined, strict=True))  # members: (M, S, ...)


def _member_points(model: torch.nn.Module, inputs: torch.Tensor, unscale) -> np.ndarray | None:
    """Each ensemble member's point forecasts (M, S, H, n_t) in the targets' units; None for one model."""
    if len(getattr(model, "members", ())) < 2:
        return None
    device = next(model.parameters()).device
    scaled = model.member_forecasts(inputs.to(device)).cpu().numpy()  # (M, S, H, n_t)
    return np.stack([unscale(member) for member in scaled])


def _baseline(name: str, series: np.ndarray, origins: np.ndarray, bounds, horizon: int, season: int):
    """A naive baseline, or a classical model fitted on the training rows (those before the first
    origin when the whole table is evaluated)."""
    if name in BASELINES:
        return baseline(name, series, origins, horizon, season)
    fit_end = bounds[0] if bounds[0] > 0 else int(origins.min()) + 1
    return classical_forecasts(name, series, fit_end, origins, horizon, season)


def metrics_table(results: dict[str, Any]) -> str:
    part = results.get("part", f"test part: {results['windows']} forecast origins")
    lines = [f"{part}, horizon {results['horizon']}"]
    if "refit" in results:
        refit = results["refit"]
        lines.append(
            f"  (the model retrained, warm-started, every {refit['every']} origins for {refit['epochs']} "
            "epoch(s) on the rows up to the origin; the baselines are updated without refitting)"
        )
    lines += [f"  ({who} skipped: {why})" for who, why in results.get("skipped", {}).items()]
    lines += [f"  {results['combination']}"] if results.get("combination") else []
    labels = {
        "model": "model",
        "recurrent": "recurrent model alone",
        "last_value": "last value (persistence)",
        "seasonal_naive": f"seasonal naive ({results['season']})",
        "drift": "drift",
        "mean": "mean",
        "arima": "ARIMA (orders by AIC)",
        "ets": "ETS (by AIC)",
        "theta": "Theta",
    }
    for name, scores in results.get("members", {}).items():
        low, high, middle = min(scores), max(scores), float(np.median(scores))
        lines.append(
            f"{name}: an ensemble of {len(scores)}, combined by the median; its members' MASE over all "
            f"steps {low:.3f} to {high:.3f} (median {middle:.3f})"
        )
    for name, per_step in results.items():
        if not isinstance(per_step, dict) or name in (
            "skipped",
            "members",
            "refit",
            "combination",
            "per_series",
        ):
            continue
        for key, rows in per_step.items():
            title = "all steps" if key == "all" else f"step {key[1:]} ahead"
            columns = [c for c in ("MAE", "RMSE", "MAPE", "sMAPE", "MASE", "coverage") if c in rows["model"]]
            ranks = {
                who: 1 + sorted(r["MASE"] for r in rows.values()).index(m["MASE"]) for who, m in rows.items()
            }
            lines.append(f"\n{name}, {title}:")
            lines.append("  " + f"{'':<28}" + "".join(f"{c:>10}" for c in columns) + "  rank")
            for who, metrics in rows.items():
                cells = "".join(f"{metrics[c]:>10.3f}" if c in metrics else f"{'':>10}" for c in columns)
                lines.append(f"  {labels[who]:<28}{cells}{ranks[who]:>6}")
            lines.append(f"  (rank: by MASE among the {len(rows)} rows)")
    for name, summary in results.get("per_series", {}).items():
        lines += _per_series_lines(name, summary, labels)
    return "\n".join(lines)


def _per_series_lines(name: str, summary: dict[str, Any], labels: dict[str, str]) -> list[str]:
    lines = [
        f"\n{name}, each of the {summary['series']} series on its own (MASE over all steps, by its own "
        "scale; all in metrics_per_series.csv):",
        f"  {'':<28}{'mean':>10}{'10%':>10}{'median':>10}{'90%':>10}  model better on",
    ]
    for who, m in summary["MASE"].items():
        better = "" if who == "model" else f"{summary['model_beats'][who]:>8.0%} of series"
        cells = "".join(f"{m[q]:>10.3f}" for q in ("mean", "q10", "q50", "q90"))
        lines.append(f"  {labels[who]:<28}{cells}  {better}")
    worst = ", ".join(f"{w['series']} ({w['MASE']:.2f})" for w in summary["worst"])
    return [*lines, f"  the model's worst series: {worst}"]
