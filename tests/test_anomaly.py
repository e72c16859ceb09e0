"""Anomaly flags into events, thresholds on clean scores, and scoring per point, per event and
point-adjusted, against counts done by hand."""

import numpy as np
import pytest

from rnnkit.anomaly import (
    best_f1_threshold,
    detection_metrics,
    events,
    iqr_threshold,
    merge_gaps,
    normalise,
    quantile_threshold,
    robust_scale,
    smooth,
)
from rnnkit.errors import DataError

#                  0  1  2  3  4  5  6  7  8  9 10 11
LABELS = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)  # events (2, 5) and (8, 10)
FLAGS = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)  # flagged (1, 2), (4, 5), (11, 12)


def test_runs_of_flags_are_events_with_exclusive_ends():
    assert events(LABELS) == [(2, 5), (8, 10)]
    assert events(FLAGS) == [(1, 2), (4, 5), (11, 12)]
    assert events(np.ones(3, dtype=bool)) == [(0, 3)] and events(np.zeros(3, dtype=bool)) == []
    assert merge_gaps(np.array([1, 0, 1, 0, 0, 0, 1], dtype=bool), gap=2).astype(int).tolist() == [
        1,
        1,
        1,
        0,
        0,
        0,
        1,
    ]


def test_each_way_of_counting_matches_the_hand_count():
    got = detection_metrics(FLAGS, LABELS)
    # per point: TP {4}, FP {1, 11}, FN {2, 3, 8, 9}
    assert got["point"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 5, "f1": 0.25})
    # per event: (2, 5) found by step 4, (8, 10) missed; of the flagged events only (4, 5) is right
    assert got["event"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "events": 2, "flagged": 3}
    )
    # point-adjusted: steps 2-4 all count as flagged: TP 3, FP 2, FN 2
    assert got["point_adjusted"] == pytest.approx({"precision": 0.6, "recall": 0.6, "f1": 0.6})


def test_thresholds_come_from_clean_scores_or_from_labelled_validation_data():
    clean = np.arange(101, dtype=np.float64)  # 0 .. 100
    assert quantile_threshold(clean, 0.99) == pytest.approx(99.0)
    assert iqr_threshold(clean) == pytest.approx(75 + 1.5 * 50)
    assert robust_scale(clean) == (50.0, 50.0) and robust_scale(np.ones(5)) == (1.0, 1.0)
    np.testing.assert_allclose(normalise([50.0, 150.0], (50.0, 50.0)), [0.0, 2.0])

    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1, 400)
    labels = np.zeros(400, dtype=bool)
    labels[[100, 101, 102, 300, 301]] = True
    scores[labels] += 8  # the labelled steps stand far out
    threshold = best_f1_threshold(scores, labels)
    assert detection_metrics(scores > threshold, labels)["event"]["f1"] == 1.0
    assert threshold > np.sort(scores[~labels])[-2]  # no more than one clean step above it


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match=r"flags \(3,\) and labels \(4,\) must both be"):
        detection_metrics(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match="clean scores hold NaN"):
        quantile_threshold(np.array([1.0, np.nan]), 0.9)
    with pytest.raises(DataError, match=r"quantile must lie in \(0, 1\)"):
        quantile_threshold(np.ones(3), 1.5)
    with pytest.raises(DataError, match="needs validation data with labelled anomalies"):
        best_f1_threshold(np.ones(5), np.zeros(5))


def test_smoothing_is_a_centred_moving_mean_with_no_score_where_the_span_is_not_whole():
    scores = np.array([2.0, 3.0, 1.0, 0.0, 9.0, 0.0, np.nan, 4.0])
    # each step's mean over itself and one step either side; none where a neighbour is missing
    expected = [np.nan, 2.0, 4 / 3, 10 / 3, 3.0, np.nan, np.nan, np.nan]
    np.testing.assert_allclose(smooth(scores, 3), expected)
    # an even span reaches one step further back than forward: steps i - 2 .. i + 1
    np.testing.assert_allclose(
        smooth(scores, 4), [np.nan, np.nan, 1.5, 13 / 4, 10 / 4, np.nan, np.nan, np.nan]
    )
    np.testing.assert_array_equal(smooth(scores, 0), scores)
    np.testing.assert_array_equal(smooth(scores, 1), scores)
    assert np.isnan(smooth(scores, 9)).all()
    # a spike of one step falls below a stretch of steps half its height
    spike, stretch = np.zeros(40), np.zeros(40)
    spike[20], stretch[15:25] = 10.0, 5.0
    assert np.nanmax(smooth(spike, 10)) < np.nanmax(smooth(stretch, 10))
    with pytest.raises(DataError, match="steps >= 0"):
        smooth(scores, -1)
