"""Forecasts judged series by series: metrics_per_series.csv (every forecaster's MASE by the series'
own scale, the model's MAE and sMAPE), their summary in the metrics and the printed table, the worst
series plotted, and evaluate.max_series sampling the series evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import write_run_config

from rnnkit.errors import ConfigError
from rnnkit.metrics import seasonal_scale
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks.forecast_eval import metrics_table


def shops(tmp_path, n_series: int = 4):
    """Daily sales of ``n_series`` shops of different sizes and lengths, written to a CSV."""
    rng = np.random.default_rng(0)
    parts = []
    for i in range(n_series):
        n = 60 + 10 * i
        t = np.arange(n)
        sales = (10 + 40 * i) * (1 + 0.3 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 1 + i, n)
        parts.append(
            pd.DataFrame({"shop": f"shop{i}", "date": pd.date_range("2024-01-01", periods=n), "sales": sales})
        )
    path = tmp_path / "shops.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


def run(tmp_path, evaluate=None, n_series=4):
    data = {"path": str(shops(tmp_path, n_series)), "time_column": "date", "id_column": "shop",
            "targets": ["sales"], "lookback": 14, "horizon": 3, "test": 10, "validation": 0, "season": 7,
            "classical": []}  # fmt: skip
    config = write_run_config(tmp_path, "forecast", data, {"hidden_size": 8}, {"epochs": 2, "batch_size": 16})
    if evaluate:
        config = config.model_copy(update={"evaluate": config.evaluate.model_copy(update=evaluate)})
    return train_run(config, log=lambda _: None), tmp_path / "run"


def test_every_series_is_scored_on_its_own_scale_and_summarised(tmp_path):
    metrics, out = run(tmp_path)
    table = pd.read_csv(out / "metrics_per_series.csv")
    assert list(table["series"]) == ["shop0", "shop1", "shop2", "shop3"]
    assert {
        "windows",
        "model_MASE",
        "model_MAE",
        "model_sMAPE",
        "seasonal_naive_MASE",
        "last_value_MASE",
    } <= set(table.columns)
    assert (table["windows"] == 10 - 3 + 1).all()
    # MASE of a series: its MAE over the series' own in-sample seasonal naive MAE (training rows only)
    frame = pd.read_csv(out.parent / "shops.csv")
    for i, row in table.iterrows():
        sales = frame.loc[frame["shop"] == f"shop{i}", "sales"].to_numpy()
        scale = seasonal_scale(sales[: len(sales) - 10], 7)
        assert row["model_MASE"] == pytest.approx(row["model_MAE"] / scale, rel=1e-5)
    # a seasonal naive forecast of a weekly series is near exact: its MASE sits far below persistence's
    assert (table["seasonal_naive_MASE"] < table["last_value_MASE"]).all()
    summary = metrics["per_series"]["sales"]
    assert summary["series"] == 4 and len(summary["worst"]) == 4
    assert summary["worst"][0]["series"] == table.loc[table["model_MASE"].idxmax(), "series"]
    assert summary["MASE"]["model"]["q50"] == pytest.approx(table["model_MASE"].median(), rel=1e-6)
    share = (table["model_MASE"] < table["seasonal_naive_MASE"]).mean()
    assert summary["model_beats"]["seasonal_naive"] == pytest.approx(share)
    printed = metrics_table(metrics)
    assert "each of the 4 series on its own" in printed and "the model's worst series: " in printed
    assert (out / "forecast_worst_step3.png").stat().st_size > 0


def test_max_series_evaluates_a_sample_of_the_series(tmp_path):
    metrics, out = run(tmp_path, {"max_series": 2}, n_series=5)
    table = pd.read_csv(out / "metrics_per_series.csv")
    assert len(table) == 2 and set(table["series"]) < {f"shop{i}" for i in range(5)}
    assert metrics["windows"] == 2 * 8 and "a sample of 2 of the 5 series" in metrics["part"]


def test_max_series_is_refused_where_there_are_no_series(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "c.yaml").write_text("task: classify\ndata: {path: t.csv}\nevaluate: {max_series: 3}\n")
    with pytest.raises(ConfigError, match=r"evaluate\.max_series samples the series of a forecast"):
        load_run_config(tmp_path / "c.yaml")
