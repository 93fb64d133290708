from pathlib import Path

import pytest

from tunelab.data.readers import ReaderOptions, read_table
from tunelab.errors import DataError


def test_csv_with_quoted_fields_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"hello, world",pos\n\n"two\nlines",neg\n', encoding="utf-8")
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert [row["text"] for row in table.rows] == ["hello, world", "two\nlines"]
    assert table.lines == [2, 4]


def test_tsv_without_header_names_columns_by_position(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text('a "quoted" text\t1\nplain\t0\n', encoding="utf-8")
    table = read_table(path, options=ReaderOptions(header=False))
    assert table.columns == ["0", "1"]
    assert table.rows[0] == {"0": 'a "quoted" text', "1": "1"}


def test_jsonl_rows_keep_lists(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x", "labels": ["a", "b"]}\n\n{"text": "y", "labels": ["c"]}\n')
    table = read_table(path)
    assert table.rows[0]["labels"] == ["a", "b"]
    assert table.lines == [1, 3]


def test_field_count_mismatch_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\nfine,pos\nalso fine,neg\nbroken, here,pos\n")
    with pytest.raises(DataError, match=r"a\.csv:4: expected 2 fields, found 3"):
        read_table(path)


def test_bad_quoting_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('text,label\nfine,pos\n"bad"quote,neg\n')
    with pytest.raises(DataError, match=r"a\.csv:3: malformed line"):
        read_table(path)


def test_non_utf8_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("text,label\nok,pos\ncaf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"a\.csv:3: not valid UTF-8.*re-save"):
        read_table(path)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x"}\n{"text": \n')
    with pytest.raises(DataError, match=r"a\.jsonl:2: invalid JSON"):
        read_table(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    path = tmp_path / "a.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"set data\.format"):
        read_table(path)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(path)
