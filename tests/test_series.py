"""Series pipeline: windows and splits never leak the future, scalers see only training rows, many
series stay apart, calendar features and future timestamps, and every bad input named clearly.

Most tests use a series whose value is its row index, so every window, target and split can be read
back as row numbers and checked exactly.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from rnnkit.data.scalers import Scaler
from rnnkit.data.series import Columns, calendar_features, future_times, load_series, split_points
from rnnkit.data.windows import make_windows
from rnnkit.errors import DataError
from rnnkit.tasks import forecast

START = pd.Timestamp("2024-01-01")  # a Monday
COLUMNS = Columns(time="date", targets=("value",), past=("past",), known=("plan",))
PAST, PLAN = 1000.0, 2000.0  # offsets of the covariates, so each column names its row too
WEEK = ("day_of_week",)


def indexed(n: int, start: pd.Timestamp = START, offset: float = 0.0) -> pd.DataFrame:
    """value = offset + row index; past = PAST + row; plan (a known covariate) = PLAN + row."""
    rows = np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq="D"),
            "value": offset + rows,
            "past": PAST + rows,
            "plan": PLAN + rows,
        }
    )


def windows_of(frame, lookback, horizon, bounds, calendar=WEEK, columns=COLUMNS, stride=1):
    all_series = load_series(frame, columns, calendar)
    none = Scaler()  # the identity: windows hold the raw row numbers
    return all_series, make_windows(all_series, lookback, horizon, bounds, none, none, none, stride)


def dates(times, calendar) -> np.ndarray:
    return calendar_features(times, calendar) if calendar else np.zeros((len(times), 0), np.float32)


def check_window_rows(series, windows, lookback, horizon, offset=0.0, calendar=()):
    """Every window reads rows origin-L+1..origin, predicts origin+1..origin+H, and its horizon rows
    hold zeros in the target and past columns and the true known values of the rows they stand for
    (the plan column and the calendar features of those dates)."""
    L, H = lookback, horizon
    assert windows.inputs.shape == (len(windows.origin), L + H, 3 + 2 * len(calendar))
    assert windows.targets.shape == (len(windows.origin), H, 1)
    for inputs, targets, origin in zip(windows.inputs, windows.targets, windows.origin, strict=True):
        seen = np.arange(origin - L + 1, origin + 1)  # (L,)
        ahead = np.arange(origin + 1, origin + H + 1)  # (H,)
        np.testing.assert_array_equal(inputs[:L, 0], offset + seen)
        np.testing.assert_array_equal(inputs[:L, 1], PAST + seen)
        np.testing.assert_array_equal(inputs[:L, 2], PLAN + seen)
        np.testing.assert_array_equal(inputs[:L, 3:], dates(series.times[seen], calendar))
        np.testing.assert_array_equal(targets[:, 0], offset + ahead)
        np.testing.assert_array_equal(inputs[L:, :2], 0.0)  # no future target or past covariate
        np.testing.assert_array_equal(inputs[L:, 2], PLAN + ahead)
        np.testing.assert_array_equal(inputs[L:, 3:], dates(series.times[ahead], calendar))


# ---- windows and splits -------------------------------------------------------------------------


@pytest.mark.parametrize(("lookback", "horizon"), [(1, 1), (3, 1), (4, 3), (7, 5)])
def test_every_window_reads_exactly_its_rows(lookback, horizon):
    n = 30
    (series,), windows = windows_of(indexed(n), lookback, horizon, [(0, n)])
    # every origin that fits, and no other: first target row L, last target row n - 1
    np.testing.assert_array_equal(windows.origin, np.arange(lookback - 1, n - horizon))
    np.testing.assert_array_equal(windows.series, 0)
    check_window_rows(series, windows, lookback, horizon, calendar=WEEK)
    assert windows.inputs.dtype == np.float32 and windows.targets.dtype == np.float32


def test_windows_of_a_part_have_all_their_targets_inside_it():
    n, L, H = 40, 5, 3
    (series,), windows = windows_of(indexed(n), L, H, [(20, 32)])
    first_target, last_target = windows.targets[:, 0, 0], windows.targets[:, -1, 0]
    assert first_target.min() == 20 and last_target.max() == 31
    np.testing.assert_array_equal(windows.origin, np.arange(19, 32 - H))
    check_window_rows(series, windows, L, H, calendar=WEEK)


def test_stride_keeps_every_stride_th_origin():
    n, L, H = 30, 4, 2
    _, windows = windows_of(indexed(n), L, H, [(0, n)], stride=3)
    np.testing.assert_array_equal(windows.origin, np.arange(L - 1, n - H, 3))


@pytest.mark.parametrize(
    ("n", "test", "validation", "expected"),
    [
        (100, 0.2, 0.1, (70, 80)),
        (100, 15, 5, (80, 85)),
        (100, 0.25, 0.0, (75, 75)),
        (100, 10, 0, (90, 90)),
        (50, 0.1, 7, (38, 45)),
    ],
)
def test_split_points_count_fractions_and_rows_from_the_end(n, test, validation, expected):
    assert split_points(n, test, validation) == expected


@pytest.mark.parametrize(("test", "validation"), [(0.5, 0.5), (60, 40), (0.9, 0.2)])
def test_split_points_refuse_parts_that_leave_no_training_rows(test, validation):
    with pytest.raises(DataError, match=r"a series of 100 rows cannot be split into train/validation/test"):
        split_points(100, test, validation)


@pytest.mark.parametrize(("test", "validation"), [(0.2, 0.2), (12, 9), (0.15, 0)])
def test_train_validation_and_test_windows_stay_in_their_parts(test, validation):
    n, L, H = 60, 6, 4
    a, b = split_points(n, test, validation)
    frame = indexed(n)
    (series,), train = windows_of(frame, L, H, [(0, a)])
    _, tested = windows_of(frame, L, H, [(b, n)])
    assert train.targets.max() == a - 1  # the last training target is the row before the split
    assert train.targets[0, 0, 0] == L
    assert tested.targets[0, 0, 0] == b and tested.origin[0] == b - 1
    assert tested.targets[-1, -1, 0] == n - 1 and tested.targets.min() >= b
    check_window_rows(series, train, L, H, calendar=WEEK)
    check_window_rows(series, tested, L, H, calendar=WEEK)
    if b > a:
        _, valid = windows_of(frame, L, H, [(a, b)])
        assert valid.targets[0, 0, 0] == a and valid.targets[-1, -1, 0] == b - 1
        assert a <= valid.targets.min() and valid.targets.max() < b
        check_window_rows(series, valid, L, H, calendar=WEEK)


def test_a_horizon_longer_than_the_data_fits_no_window():
    with pytest.raises(
        DataError,
        match=r"no window of lookback 5 \+ horizon 30 fits in this part of the data: "
        "shorten the windows, or give the part more rows",
    ):
        windows_of(indexed(20), 5, 30, [(0, 20)])


def test_a_part_shorter_than_the_horizon_fits_no_window():
    with pytest.raises(DataError, match="no window of lookback 3 \\+ horizon 4 fits"):
        windows_of(indexed(40), 3, 4, [(37, 40)])


# ---- splits through tasks.forecast.prepare ------------------------------------------------------


def config(**overrides) -> forecast.SeriesDataConfig:
    options = dict(
        path="table.csv",
        time_column="date",
        targets=["value"],
        past_covariates=["past"],
        known_covariates=["plan"],
        calendar=list(WEEK),
        lookback=5,
        horizon=3,
        test=0.2,
        validation=0.1,
        scaler="none",  # raw values: the tests read row numbers back from the targets
    )
    return forecast.SeriesDataConfig(**{**options, **overrides})


def target_rows(dataset) -> np.ndarray:
    return dataset.tensors[1][..., 0].numpy()  # (S, H): the row index of each target (scaler none)


@pytest.mark.parametrize(
    ("test", "validation", "expected"),
    [
        (0.2, 0.1, (42, 48)),  # 12 and 6 of 60 rows
        (12, 6, (42, 48)),
        ("2024-02-20", "2024-02-10", (40, 50)),  # rows 50 and 40 of a daily series from 2024-01-01
        ("2024-02-20", 10, (40, 50)),
        (10, "2024-02-10", (40, 50)),
        (0.2, "2024-02-08", (38, 48)),  # a fraction for the test part beside a date for validation
        ("2024-02-20", 0.0, (50, 50)),
    ],
)
def test_prepare_splits_by_fraction_rows_and_date_without_leaking(test, validation, expected):
    n, L, H = 60, 5, 3
    prepared = forecast.prepare(config(test=test, validation=validation), frame=indexed(n))
    a, b = expected
    assert prepared.bounds == [(a, b)]
    train = target_rows(prepared.train)
    assert train[0, 0] == L and train.max() == a - 1
    windows = prepared.test_windows
    np.testing.assert_array_equal(windows.origin, np.arange(b - 1, n - H))
    assert target_rows(prepared.test)[0, 0] == b and target_rows(prepared.test).max() == n - 1
    if b > a:
        valid = target_rows(prepared.validation)
        assert valid[0, 0] == a and valid.max() == b - 1 and valid.min() >= a
    else:
        assert prepared.validation is None
    (series,) = prepared.series
    check_window_rows(series, windows, L, H, calendar=WEEK)


def test_prepare_without_covariates():
    """The simplest table, a time column and one target, prepares (no past or known columns to scale)."""
    n = 40
    frame = indexed(n)[["date", "value"]]
    prepared = forecast.prepare(
        config(past_covariates=[], known_covariates=[], calendar=[], scaler="standard"), frame=frame
    )
    inputs = prepared.test.tensors[0]
    assert inputs.shape[1:] == (5 + 3, 1)
    assert prepared.bounds == [(28, 32)]


def test_prepare_with_a_date_split_needs_a_time_column():
    frame = indexed(30).drop(columns="date")
    with pytest.raises(DataError, match=r"a split at the date '2024-01-20' needs data.time_column"):
        forecast.prepare(config(time_column=None, calendar=[], test="2024-01-20"), frame=frame)


def test_scalers_and_mase_scale_are_fitted_on_the_training_rows_only():
    n = 60
    cfg = config(scaler="standard", calendar=["day_of_year"], season=2, test=12, validation=6)
    frame = indexed(n)
    a = 42
    later = frame.copy()
    later.loc[a:, ["value", "past", "plan"]] *= -50.0  # every row from the validation part on
    fitted = forecast.prepare(cfg, frame=frame).preprocessing
    assert forecast.prepare(cfg, frame=later).preprocessing == fitted
    train = frame.iloc[:a]
    assert fitted["scalers"]["targets"]["mean"] == pytest.approx([train["value"].mean()])
    assert fitted["scalers"]["targets"]["std"] == pytest.approx([train["value"].std(ddof=0)])
    assert fitted["scalers"]["past"]["mean"] == pytest.approx([train["past"].mean()])
    assert fitted["scalers"]["known"]["mean"][0] == pytest.approx(train["plan"].mean())
    assert fitted["mase_scale"] == pytest.approx([2.0])  # |y[t] - y[t-2]| on rows 0..41
    earlier = frame.copy()
    earlier.loc[a - 1, "value"] += 7.0  # the last training row does move them
    assert (
        forecast.prepare(cfg, frame=earlier).preprocessing["scalers"]["targets"]
        != fitted["scalers"]["targets"]
    )


# ---- many series ---------------------------------------------------------------------------------


def stacked() -> pd.DataFrame:
    """Two series of 30 and 50 days under a ``store`` id, interleaved by date; values 0.. and 10000.."""
    north, south = indexed(30).assign(store="north"), indexed(50, offset=10000.0).assign(store="south")
    return pd.concat([north, south]).sort_values(["date", "store"], kind="stable").reset_index(drop=True)


def test_many_series_are_split_on_their_own_and_windows_never_cross_them():
    cfg = config(id_column="store", test=0.2, validation=0.1)
    prepared = forecast.prepare(cfg, frame=stacked())
    north, south = prepared.series
    assert (north.key, south.key) == ("north", "south")
    assert prepared.bounds == [(21, 24), (35, 40)]  # each by its own length
    windows = prepared.test_windows
    for i, (series, offset, b, n) in enumerate([(north, 0.0, 24, 30), (south, 10000.0, 40, 50)]):
        mine = windows.series == i
        np.testing.assert_array_equal(windows.origin[mine], np.arange(b - 1, n - 3))
        selected = type(windows)(windows.table, 5, 3, windows.series[mine], windows.origin[mine])
        check_window_rows(series, selected, 5, 3, offset, calendar=WEEK)
    for dataset in (prepared.train, prepared.validation, prepared.test):
        inputs, targets = (t.numpy() for t in dataset.tensors)
        observed = np.concatenate([inputs[:, :5, 0], targets[..., 0]], 1)  # (S, L + H) values in time order
        assert np.all(np.diff(observed, axis=1) == 1)  # consecutive rows of one series, never a jump


def test_many_series_windows_keep_their_series_and_origins():
    frame = stacked()
    columns = Columns("date", ("value",), ("past",), ("plan",), id="store")
    all_series, windows = windows_of(frame, 4, 2, [(0, 30), (0, 50)], columns=columns)
    assert [len(s.targets) for s in all_series] == [30, 50]
    assert (windows.series == 0).sum() == 30 - 4 - 2 + 1 and (windows.series == 1).sum() == 50 - 4 - 2 + 1
    np.testing.assert_array_equal(windows.origin[windows.series == 1], np.arange(3, 48))
    south = windows.inputs[windows.series == 1]
    assert south[:, :4, 0].min() >= 10000  # no row of the north series inside a south window


def test_a_too_short_series_gives_no_windows_but_the_others_do():
    frame = pd.concat([indexed(40).assign(id="long"), indexed(6).assign(id="short")])
    columns = Columns("date", ("value",), id="id")
    all_series, windows = windows_of(frame, 5, 3, [(0, 40), (0, 6)], calendar=(), columns=columns)
    assert set(windows.series.tolist()) == {0}
    assert len(all_series) == 2


# ---- calendar features and future timestamps ----------------------------------------------------


def test_calendar_features_of_known_dates():
    times = pd.DatetimeIndex(["2024-01-01", "2024-01-04", "2024-07-01", "2023-12-31"])
    # Monday, Thursday, Monday, Sunday; days of the year 1, 4, 183 (2024 is a leap year), 365
    week = [0, 3, 0, 6]
    year = [0, 3, 182, 364]
    features = calendar_features(times, ["day_of_week", "day_of_year"])
    assert features.shape == (4, 4) and features.dtype == np.float32
    for row in range(4):
        angles = [2 * math.pi * week[row] / 7, 2 * math.pi * year[row] / 365.25]
        expected = [math.sin(angles[0]), math.sin(angles[1]), math.cos(angles[0]), math.cos(angles[1])]
        np.testing.assert_allclose(features[row], expected, atol=1e-6)


def test_month_and_hour_features():
    times = pd.DatetimeIndex(["2024-04-15 06:00", "2024-10-01 18:00"])
    features = calendar_features(times, ["month", "hour"])
    expected = [
        [math.sin(2 * math.pi * 3 / 12), math.sin(math.pi / 2), math.cos(2 * math.pi * 3 / 12), 0.0],
        [math.sin(2 * math.pi * 9 / 12), -1.0, math.cos(2 * math.pi * 9 / 12), 0.0],
    ]
    np.testing.assert_allclose(features, expected, atol=1e-6)


def test_calendar_features_use_no_deprecated_pandas_api():
    times = pd.date_range("2024-01-01", periods=3, freq="D")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        calendar_features(times, ["day_of_week", "day_of_year", "month", "hour"])


def test_load_series_appends_calendar_after_known_columns():
    (series,) = load_series(indexed(10), COLUMNS, ("day_of_week", "month"))
    assert series.known.shape == (10, 1 + 4)
    np.testing.assert_array_equal(series.known[:, 0], PLAN + np.arange(10))
    np.testing.assert_array_equal(
        series.known[:, 1:], calendar_features(series.times, ["day_of_week", "month"])
    )


@pytest.mark.parametrize("spacing", ["1D", "6h", "7D"])
def test_future_times_continue_the_spacing(spacing):
    times = pd.date_range("2024-03-01", periods=5, freq=spacing)
    step = pd.Timedelta(spacing)
    expected = pd.DatetimeIndex([times[-1] + step * k for k in (1, 2, 3)])
    pd.testing.assert_index_equal(future_times(times, 3), expected)


def test_future_times_use_the_usual_spacing_despite_a_gap():
    times = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06", "2024-01-07"])
    assert list(future_times(times, 2)) == [pd.Timestamp("2024-01-08"), pd.Timestamp("2024-01-09")]


def test_future_times_need_two_timestamps():
    with pytest.raises(DataError, match="need at least two past timestamps to infer the spacing"):
        future_times(pd.DatetimeIndex(["2024-01-01"]), 2)


# ---- bad input ----------------------------------------------------------------------------------


def test_nan_in_a_target_names_the_rows_and_the_fill_options():
    frame = indexed(10)
    frame.loc[[3, 7], "value"] = np.nan
    with pytest.raises(
        DataError,
        match=r"missing or non-numeric values in \['value'\] on rows \[4, 8\] \(2 rows\); "
        r"set data.missing to one of \['ffill', 'interpolate', 'zero'\]",
    ):
        load_series(frame, COLUMNS)


def test_a_non_numeric_value_counts_as_missing():
    frame = indexed(6)
    frame["past"] = frame["past"].astype(object)
    frame.loc[2, "past"] = "n/a"
    with pytest.raises(DataError, match=r"missing or non-numeric values in \['past'\] on rows \[3\]"):
        load_series(frame, COLUMNS)


def test_missing_values_of_one_series_name_it():
    frame = pd.concat([indexed(5).assign(id="a"), indexed(5).assign(id="b")], ignore_index=True)
    frame.loc[6, "value"] = np.nan
    columns = Columns("date", ("value",), id="id")
    with pytest.raises(
        DataError, match=r"missing or non-numeric values of series 'b' in \['value'\] on rows \[7\]"
    ):
        load_series(frame, columns)


def test_a_missing_column_is_named_with_the_nearest_and_all_columns():
    columns = Columns("date", ("valeu",))
    with pytest.raises(
        DataError,
        match=r"no column 'valeu' \(did you mean 'value'\?\); its columns are "
        r"\['date', 'value', 'past', 'plan'\]",
    ):
        load_series(indexed(5), columns)


def test_a_missing_id_column_is_named():
    with pytest.raises(DataError, match=r"no column 'store'"):
        load_series(indexed(5), Columns("date", ("value",), id="store"))


def test_unsorted_timestamps_name_the_rows():
    frame = indexed(6)
    frame.loc[[2, 3], "date"] = frame.loc[[3, 2], "date"].to_numpy()
    with pytest.raises(
        DataError,
        match=r"not in time order: row 4 \(2024-01-03 00:00:00\) comes after row 3 "
        r"\(2024-01-04 00:00:00\); sort the table by time",
    ):
        load_series(frame, COLUMNS)


def test_duplicated_timestamps_are_refused():
    frame = indexed(6)
    frame.loc[3, "date"] = frame.loc[2, "date"]
    frame.loc[4:, "date"] -= pd.Timedelta(days=1)
    with pytest.raises(
        DataError,
        match=r"duplicated timestamps: \['2024-01-03 00:00:00'\] \(1 repeats\); "
        "aggregate or drop the duplicates",
    ):
        load_series(frame, COLUMNS)


def test_non_dates_in_the_time_column_name_the_rows():
    frame = indexed(6)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d").astype(object)
    frame.loc[2, "date"] = "yesterday"
    with pytest.raises(DataError, match=r"time column 'date' has values that are not dates on rows \[3\]"):
        load_series(frame, COLUMNS)


def test_calendar_features_need_a_time_column():
    with pytest.raises(DataError, match=r"calendar features need data.time_column"):
        load_series(indexed(6), Columns(None, ("value",)), ("day_of_week",))


def test_unknown_calendar_features_are_listed():
    with pytest.raises(
        DataError,
        match=r"unknown calendar features \['week'\]; expected some of "
        r"\['day_of_week', 'day_of_year', 'hour', 'month'\]",
    ):
        load_series(indexed(6), COLUMNS, ("day_of_week", "week"))


def test_unknown_missing_policy_is_listed():
    with pytest.raises(DataError, match=r"unknown missing-value policy 'mean'; expected one of \['error', "):
        load_series(indexed(6), COLUMNS, missing="mean")


@pytest.mark.parametrize(("dropped", "count"), [([4], 1), ([4, 9], 2)])
def test_irregular_timestamps_warn_with_the_count(dropped, count):
    frame = indexed(14).drop(index=dropped)
    with pytest.warns(
        UserWarning, match=rf"irregular timestamps: {count} steps differ from the usual 1 days"
    ):
        (series,) = load_series(frame, COLUMNS)
    assert len(series.targets) == 14 - count


def test_regular_timestamps_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_series(indexed(10), COLUMNS)


# ---- filling holes ------------------------------------------------------------------------------


HOLES = [np.nan, np.nan, 2.0, np.nan, 6.0, np.nan]  # two leading holes, one inside, one trailing


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("ffill", [2.0, 2.0, 2.0, 2.0, 6.0, 6.0]),  # carried forward; leading holes take the first value
        ("interpolate", [2.0, 2.0, 2.0, 4.0, 6.0, 6.0]),  # linear inside, the nearest value at the edges
        ("zero", [0.0, 0.0, 2.0, 0.0, 6.0, 0.0]),
    ],
)
def test_fill_policies(policy, expected):
    frame = indexed(6)
    frame["value"] = HOLES
    frame.loc[0, "past"] = np.nan  # a leading hole in a covariate too
    (series,) = load_series(frame, COLUMNS, missing=policy)
    np.testing.assert_array_equal(series.targets[:, 0], expected)
    assert series.past[0, 0] == (0.0 if policy == "zero" else PAST + 1)
    np.testing.assert_array_equal(series.past[1:, 0], PAST + np.arange(1, 6))
    np.testing.assert_array_equal(series.known[:, 0], PLAN + np.arange(6))


def test_fill_stays_within_each_series():
    frame = pd.concat([indexed(4).assign(id="a"), indexed(4, offset=100.0).assign(id="b")], ignore_index=True)
    frame.loc[4, "value"] = np.nan  # the first row of b: nothing of a may be carried into it
    columns = Columns("date", ("value",), id="id")
    _, b = load_series(frame, columns, missing="ffill")
    np.testing.assert_array_equal(b.targets[:, 0], [101.0, 101.0, 102.0, 103.0])
