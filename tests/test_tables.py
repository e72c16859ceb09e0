"""Tables: every supported file format reads to the same frame; bad files give a DataError naming the fix."""

import numpy as np
import pandas as pd
import pytest

from rnnkit.data.series import Columns, load_series
from rnnkit.data.tables import read_table, require_columns
from rnnkit.errors import DataError

WRITERS = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    "parquet": lambda frame, path: frame.to_parquet(path, index=False),
    "jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
    "json": lambda frame, path: frame.to_json(path, orient="records", lines=True),
}


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
            "store": ["north", "south", "north", "south"],
            "sales": [3, 0, 12, 7],
            "price": [0.5, -1.25, 2.0, 1e-3],
        }
    )


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its date column parsed: JSON lines already gives datetimes there, text gives strings."""
    return frame.assign(date=pd.to_datetime(frame["date"]))


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_every_format_reads_the_same_frame(tmp_path, suffix):
    path = tmp_path / f"table.{suffix}"
    WRITERS[suffix](table(), path)
    frame = read_table(path)
    assert list(frame.columns) == ["date", "store", "sales", "price"]
    assert frame["sales"].dtype.kind == "i" and frame["price"].dtype.kind == "f"
    pd.testing.assert_frame_equal(comparable(frame), comparable(table()))


def test_suffix_case_does_not_matter_and_str_paths_work(tmp_path):
    path = tmp_path / "TABLE.CSV"
    table().to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_table(str(path)), read_table(path))


def test_unknown_suffix_lists_the_readable_ones(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("anything")
    with pytest.raises(
        DataError,
        match=r"cannot read table\.xlsx: expected one of \['\.csv', '\.json', "
        r"'\.jsonl', '\.parquet', '\.tsv'\]",
    ):
        read_table(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*nowhere\.csv' does not exist"):
        read_table(tmp_path / "nowhere.csv")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("header_only.csv", "date,value\n", r"header_only\.csv has no rows"),
        ("empty.jsonl", "", r"empty\.jsonl has no rows"),
        ("empty.csv", "", r"empty\.csv could not be parsed as csv"),
        ("empty.parquet", "", r"empty\.parquet could not be parsed as parquet"),
    ],
)
def test_empty_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", r"ragged\.csv could not be parsed as csv: .*Expected 2 fields"),
        ("broken.jsonl", b'{"a": 1\n', r"broken\.jsonl could not be parsed as jsonl"),
        ("fake.parquet", b"not a parquet file", r"fake\.parquet could not be parsed as parquet"),
        ("latin.csv", b"a,b\n\xff\xfe,2\n", r"latin\.csv could not be parsed as csv: 'utf-8' codec"),
    ],
)
def test_malformed_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_require_columns_names_the_missing_one_the_nearest_and_all():
    with pytest.raises(
        DataError,
        match=r"the table has no column 'sale' \(did you mean 'sales'\?\); "
        r"its columns are \['date', 'store', 'sales', 'price'\]",
    ):
        require_columns(table(), ["date", "sale"])


def test_require_columns_without_a_near_name_gives_no_hint_and_uses_the_source():
    with pytest.raises(DataError, match=r"^sales\.csv has no column 'zzz'; its columns are \['date', "):
        require_columns(table(), ["zzz"], source="sales.csv")


def test_require_columns_accepts_present_columns():
    require_columns(table(), ["price", "date", "store"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_only_the_columns_asked_for_are_read_numbers_as_float32_and_ids_as_categories(tmp_path, suffix):
    frame = pd.DataFrame({"shop": ["a", "a", "b"], "date": ["2024-01-01", "2024-01-02", "2024-01-01"],
                          "sales": [1.5, 2.5, 3.5], "unused": ["x", "y", "z"]})  # fmt: skip
    path = tmp_path / f"t{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    read = read_table(path, ["shop", "date", "sales"], floats=["sales"], categories=["shop"])
    assert list(read.columns) == ["shop", "date", "sales"]
    assert read["sales"].dtype == np.float32 and isinstance(read["shop"].dtype, pd.CategoricalDtype)
    assert read["sales"].tolist() == [1.5, 2.5, 3.5] and read["shop"].tolist() == ["a", "a", "b"]
    with pytest.raises(DataError, match=rf"t{suffix} has no column 'sale' \(did you mean 'sales'\?\)"):
        read_table(path, ["shop", "sale"])


def test_a_text_cell_in_a_float_column_is_left_for_the_series_check_that_names_its_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("date,sales\n2024-01-01,1\n2024-01-02,n/a?\n2024-01-03,3\n")
    read = read_table(path, ["date", "sales"], floats=["sales"])
    assert read["sales"].tolist() == ["1", "n/a?", "3"]
    with pytest.raises(DataError, match=r"missing or non-numeric values in \['sales'\] on rows \[2\]"):
        load_series(read, Columns(time="date", targets=("sales",)))
