"""CSV and TSV files, with or without a header row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tunelab.data.readers import ReaderOptions, Table, read_text
from tunelab.errors import DataError

FIX_FIELD_COUNT = {
    ",": "quote fields that contain a comma",
    "\t": "remove stray tabs from the text",
}


def _read_delimited(path: Path, delimiter: str, header: bool) -> Table:
    text = read_text(path)
    # TSV files such as GLUE's are not quoted; a stray quote is text there.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting,
                        strict=True)
    table = Table(path=path, columns=[])
    record_start = 1
    try:
        for fields in reader:
            line, record_start = record_start, reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if not table.columns:
                table.columns = (
                    [name.strip() for name in fields] if header
                    else [str(i) for i in range(len(fields))]
                )
                if header:
                    _check_header(path, table.columns, delimiter)
                    continue
            if len(fields) != len(table.columns):
                raise DataError(
                    f"{path}:{line}: expected {len(table.columns)} fields, found {len(fields)}; "
                    f"{FIX_FIELD_COUNT[delimiter]}"
                )
            table.rows.append(dict(zip(table.columns, fields, strict=True)))
            table.lines.append(line)
    except csv.Error as error:
        raise DataError(
            f"{path}:{reader.line_num}: malformed line ({error}); check the quoting"
        ) from None
    return table


def _check_header(path: Path, columns: list[str], delimiter: str) -> None:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise DataError(f"{path}:1: column '{name}' appears twice in the header; rename "
                            "one of them")
        seen.add(name)
    if delimiter == "," and len(columns) == 1 and ";" in columns[0]:
        raise DataError(f"{path}:1: the header '{columns[0]}' looks semicolon-separated; "
                        "save the file with commas, or as .tsv with tabs")


def read_csv(path: Path, options: ReaderOptions) -> Table:
    return _read_delimited(path, ",", options.header)


def read_tsv(path: Path, options: ReaderOptions) -> Table:
    return _read_delimited(path, "\t", options.header)
