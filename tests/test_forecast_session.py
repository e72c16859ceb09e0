"""Forecaster sessions: a series fed in pieces answers, after each piece, as a one-shot forecast on
every row fed so far (each strategy, RevIN, intervals, an ensemble, many series, no time column,
holes filled by each policy); only the new rows are scaled; bad rows get forecast's errors and
change nothing."""

import numpy as np
import pandas as pd
import pytest
import torch

import rnnkit
from rnnkit.bundle import save_bundle
from rnnkit.errors import ConfigError, DataError
from rnnkit.models import build_model
from rnnkit.tasks import forecast, get_task

N, L, H = 30, 8, 3
DATA = dict(
    time_column="date",
    targets=["value"],
    past_covariates=["humidity"],
    calendar=["day_of_week"],
    lookback=L,
    horizon=H,
    test=8,
    validation=0,
    classical=[],
)


def table(n: int = N, seed: int = 0, start: str = "2023-03-01") -> pd.DataFrame:
    """A daily series with a weekly cycle and a trend, and a past covariate (humidity)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"),
            "value": (20 + 3 * np.sin(2 * np.pi * t / 7) + 0.05 * t + rng.normal(0, 0.5, n)).round(3),
            "humidity": rng.uniform(30, 90, n).round(1),
        }
    )


def bundle(path, frame: pd.DataFrame, model: dict | None = None, **data):
    """A forecaster bundle (untrained, seeded weights) with the scalers fitted on ``frame``, loaded."""
    cfg = forecast.SeriesDataConfig(**{**DATA, **data})
    prepared = forecast.prepare(cfg, frame=frame)
    keys = dict(get_task("forecast").model_keys(cfg).fixed)
    torch.manual_seed(0)
    built = build_model({"name": "forecaster", **keys, "hidden_size": 8, **(model or {})})
    config = {"task": "forecast", "data": cfg.model_dump(), "model": built.config.model_dump()}
    return rnnkit.load(save_bundle(path, built, config, prepared.preprocessing))


def pieces(frame: pd.DataFrame, size: int):
    """The rows in runs of ``size``, alternately as a list of dicts, a dict of columns and a DataFrame."""
    forms = [
        lambda part: part.to_dict("records"),
        lambda part: part.to_dict("list"),
        lambda part: part,
    ]
    for k, start in enumerate(range(0, len(frame), size)):
        yield start + size, forms[k % 3](frame.iloc[start : start + size])


def assert_follows(predictor, frame: pd.DataFrame, sizes=(1, 3, 7), **options) -> None:
    """Each answer of a session fed ``frame`` in pieces equals forecast on the rows fed so far."""
    for size in sizes:
        session = predictor.session(**options)
        for end, part in pieces(frame, size):
            answer = session.feed(part)
            if min(end, len(frame)) < L:
                assert answer is None
                continue
            expected = predictor.forecast(frame.iloc[:end], **options)
            pd.testing.assert_frame_equal(answer, expected, rtol=0, atol=1e-5)


MODELS = {
    "direct": ({"distribution": "gaussian", "revin": True, "highway_window": 3}, {}),
    "recursive": ({"strategy": "recursive", "revin": True}, {"past_covariates": []}),
    "seq2seq": ({"strategy": "seq2seq", "distribution": "quantile", "revin": True}, {}),
    "ensemble": ({"name": "forecast_ensemble", "members": 2, "revin": True}, {}),
    "no time": ({}, {"time_column": None, "calendar": []}),
}


@pytest.mark.parametrize("name", MODELS)
def test_a_session_fed_in_pieces_answers_as_forecast_on_the_rows_so_far(tmp_path, name):
    model, data = MODELS[name]
    frame = table()
    predictor = bundle(tmp_path / "b", frame, model, **data)
    assert "session" in predictor.verbs
    assert_follows(predictor, frame)


def test_a_session_follows_one_series_of_many_and_a_shorter_horizon(tmp_path):
    north, south = table().assign(store="north"), table(seed=3, start="2023-03-05").assign(store="south")
    predictor = bundle(tmp_path / "b", pd.concat([north, south], ignore_index=True), id_column="store")
    assert_follows(predictor, south, sizes=(3,), horizon=2, level=0.5)
    session = predictor.session()
    session.feed(south.iloc[:3])
    other = r"this session follows series 'south'; these rows are of series 'north'"
    with pytest.raises(DataError, match=other):
        session.feed(north.iloc[10:12])
    two = r"these rows hold 2 series \(\['north', 'south'\]\); a session follows one"
    with pytest.raises(DataError, match=two):
        predictor.session().feed(pd.concat([north.iloc[:2], south.iloc[:2]]))


@pytest.mark.parametrize("policy", ["zero", "ffill", "interpolate"])
def test_holes_are_filled_as_forecast_fills_them_even_when_a_later_row_changes_the_fill(tmp_path, policy):
    frame = table()
    predictor = bundle(tmp_path / "b", frame)
    holed = frame.astype({"value": float, "humidity": float})
    holed.loc[[0, 9, 10, 11, 17, 29], "value"] = np.nan
    holed.loc[[1, 2, 10, 20], "humidity"] = np.nan
    assert_follows(predictor, holed, sizes=(1, 3), missing=policy)


def test_only_the_new_rows_are_scaled_and_the_window_is_the_lookback(tmp_path):
    frame = table()
    session = bundle(tmp_path / "b", frame).session()
    scaled = []
    targets, past, known = session.scalers.shared

    class Counting:
        def transform(self, values):
            scaled.append(len(values))
            return targets.transform(values)

        def inverse_transform(self, values):
            return targets.inverse_transform(values)

    session.scalers.shared = (Counting(), past, known)
    for _, row in pieces(frame, 1):
        session.feed(row)
    assert sum(scaled) == N and len(session.window) == L and session.rows_read == N


def test_bad_rows_get_forecasts_errors_and_change_nothing(tmp_path):
    frame = table()
    predictor = bundle(tmp_path / "b", frame)
    session = predictor.session()
    session.feed(frame.iloc[:10])
    holed = frame.iloc[10:13].assign(value=[1.0, np.nan, 2.0])
    cases = [
        (frame.iloc[10:12].drop(columns="humidity"), r"the data has no column 'humidity'"),
        (holed, r"missing or non-numeric values in \['value'\] on rows \[2\] \(1 rows\); set missing="),
        (frame.iloc[[11, 10]], r"timestamps are not in time order: row 2 \(2023-03-11"),
        (frame.iloc[5:7], r"not in time order: row 1 \(2023-03-06 00:00:00\) comes before the last row fed"),
        (frame.iloc[9:11], r"duplicated timestamps: row 1 \(2023-03-10 00:00:00\) repeats the last row fed"),
        (frame.iloc[10:11].assign(date="soon"), r"time column 'date' has values that are not dates on rows"),
        ("2023-03-11,20.1,50", r"feed rows as a DataFrame, a dict of columns or a list of dicts .*got str"),
        ([], r"feed at least one row"),
        ({"value": [1.0, 2.0], "humidity": [3.0]}, r"the fed columns do not make a table"),
    ]
    for rows, message in cases:
        with pytest.raises(DataError, match=message):
            session.feed(rows)
    answer = session.feed(frame.iloc[10:])
    pd.testing.assert_frame_equal(answer, predictor.forecast(frame), rtol=0, atol=1e-5)


def test_what_a_session_cannot_be_opened_with(tmp_path):
    frame = table()
    predictor = bundle(tmp_path / "b", frame)
    with pytest.raises(ConfigError, match=r"a forecaster takes no condition: a session follows the series"):
        predictor.session(condition="north")
    with pytest.raises(DataError, match=rf"this model forecasts up to {H} steps ahead; asked for {H + 1}"):
        predictor.session(horizon=H + 1)
    planned = bundle(tmp_path / "k", frame.assign(plan=1.0), known_covariates=["plan"])
    with pytest.raises(DataError, match=r"needs future values of \['plan'\]; only calendar features"):
        planned.session()
