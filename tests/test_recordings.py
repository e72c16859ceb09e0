"""Readers of labelled numeric recordings: UCR/UEA .ts files, .npz of ragged arrays, long tables;
tiny generated files, and malformed ones refused with the file and line named."""

import numpy as np
import pandas as pd
import pytest

from rnnkit.data.recordings import read_recordings
from rnnkit.errors import DataError

TS = """# a comment
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1.0,2.0,3.0:4.0,5.0,6.0:up
-1,0.5:2,2.5:down
"""


def write(tmp_path, text: str, name: str = "tiny.ts"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_ts_file_gives_each_case_as_steps_by_channels_with_its_label(tmp_path):
    got = read_recordings(write(tmp_path, TS))
    assert got.labels == ["up", "down"] and got.classes == ["up", "down"]
    assert got.channels == ["dim_0", "dim_1"]
    np.testing.assert_array_equal(got.sequences[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(got.sequences[1], [[-1, 2], [0.5, 2.5]])
    assert got.sequences[0].dtype == np.float32


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("1.0,2.0,3.0:4.0,5.0,6.0:up", "1.0,x,3.0:4.0,5.0,6.0:up"),
            r"tiny\.ts, line 10: 'x' is not a number",
        ),
        (
            ("1.0,2.0,3.0:4.0,5.0,6.0:up", "1.0,2.0:4.0,5.0,6.0:up"),
            r"line 10: .*channels have different lengths",
        ),
        (("-1,0.5:2,2.5:down", "-1,?:2,2.5:down"), r"line 11: '\?' is not a number"),
        (("-1,0.5:2,2.5:down", "-1,0.5:2,2.5:sideways"), r"labels \['sideways'\] are not among"),
        (("-1,0.5:2,2.5:down", "-1,0.5:down"), r"different numbers of channels \[1, 2\]"),
        (("@timeStamps false", "@timeStamps true"), r"@timeStamps true is not supported"),
        (("@data\n", ""), r"line 9: expected a header line \(@\.\.\.\) before @data"),
        (("@classLabel true up down", "@classLabel false"), r"@classLabel is not true"),
        (("@problemName Tiny", "problemName Tiny"), r"line 2: expected a header line"),
    ],
)
def test_a_malformed_ts_file_is_refused_naming_the_line(tmp_path, change, message):
    with pytest.raises(DataError, match=message):
        read_recordings(write(tmp_path, TS.replace(*change)))


def test_a_ts_file_that_is_not_text_or_has_no_cases_is_refused(tmp_path):
    path = tmp_path / "binary.ts"
    path.write_bytes(b"@data\n\xff\xfe\x00")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        read_recordings(path)
    with pytest.raises(DataError, match="has no @data line"):
        read_recordings(write(tmp_path, TS.split("@data")[0]))
    with pytest.raises(DataError, match="has no cases after @data"):
        read_recordings(write(tmp_path, TS.split("@data")[0] + "@data\n"))


def test_an_npz_of_recordings_end_to_end_is_cut_by_its_lengths(tmp_path):
    values = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "r.npz", values=values, lengths=np.array([1, 3, 2]), labels=np.array(["a", "b", "a"]))
    got = read_recordings(tmp_path / "r.npz")
    assert [len(s) for s in got.sequences] == [1, 3, 2] and got.labels == ["a", "b", "a"]
    np.testing.assert_array_equal(got.sequences[2], values[4:])


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"values": np.zeros((4, 2)), "lengths": np.array([2, 1]), "labels": np.array([0, 1])},
            r"add up to the 4",
        ),
        ({"values": np.zeros((4, 2)), "labels": np.array([0])}, r"lacks the arrays \['lengths'\]"),
        ({"values": np.full((2, 1), np.nan), "lengths": np.array([2]), "labels": np.array([0])}, r"NaN"),
        ({"values": np.zeros(3), "lengths": np.array([[3]]), "labels": np.array([0])}, r"expected values"),
    ],
)
def test_a_malformed_npz_is_refused_saying_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "r.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_recordings(tmp_path / "r.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"cannot be read as a \.npz"):
        read_recordings(tmp_path / "junk.npz")


def test_a_long_table_groups_rows_by_recording_in_time_order(tmp_path):
    frame = pd.DataFrame(
        {
            "session": ["s1", "s2", "s1", "s2", "s1"],
            "t": [2, 0, 0, 1, 1],
            "ax": [3.0, 10.0, 1.0, 11.0, 2.0],
            "ay": [30.0, 100.0, 10.0, 110.0, 20.0],
            "activity": ["walk", "run", "walk", "run", "walk"],
        }
    )
    frame.to_csv(tmp_path / "steps.csv", index=False)
    got = read_recordings(
        tmp_path / "steps.csv", id_column="session", time_column="t", label_column="activity"
    )
    assert got.channels == ["ax", "ay"] and got.labels == ["walk", "run"]
    np.testing.assert_array_equal(got.sequences[0], [[1, 10], [2, 20], [3, 30]])
    np.testing.assert_array_equal(got.sequences[1], [[10, 100], [11, 110]])

    frame.loc[0, "activity"] = "run"
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(DataError, match=r"recording 's1' has more than one label \['run', 'walk'\]"):
        read_recordings(tmp_path / "mixed.csv", id_column="session", label_column="activity")
    with pytest.raises(DataError, match=r"has no column \['recording'\]"):
        read_recordings(tmp_path / "steps.csv", id_column="recording", label_column="activity")
    frame.loc[1, "ax"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    with pytest.raises(DataError, match=r"rows \[3\] .* hold missing values"):
        read_recordings(
            tmp_path / "gaps.csv", id_column="session", label_column="activity", channels=["ax", "ay"]
        )


def test_recordings_to_predict_need_no_labels(tmp_path):
    unlabelled = (
        TS.replace("@classLabel true up down", "@classLabel false").replace(":up", "").replace(":down", "")
    )
    got = read_recordings(write(tmp_path, unlabelled), labelled=False)
    assert got.labels is None and [len(s) for s in got.sequences] == [3, 2]
    assert (
        read_recordings(write(tmp_path, TS, "labelled.ts"), labelled=False).labels is None
    )  # labels ignored
    np.savez(tmp_path / "r.npz", values=np.zeros((3, 2)), lengths=np.array([1, 2]))
    assert [len(s) for s in read_recordings(tmp_path / "r.npz", labelled=False).sequences] == [1, 2]
    frame = pd.DataFrame({"id": [1, 1, 2], "x": [0.5, 1.0, 2.0], "label": ["a", "a", "b"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    got = read_recordings(tmp_path / "t.csv", labelled=False)
    assert got.channels == ["x"] and got.labels is None  # the label column is not a channel
    with pytest.raises(DataError, match="@classLabel is not true"):
        read_recordings(write(tmp_path, unlabelled, "again.ts"))
