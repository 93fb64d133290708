"""Data readers: each turns a file into a Table of rows, remembering each row's line.

A reader is one module plus one entry in `tunelab.registry.readers`. Readers know
formats, not tasks: a task maps a Table's columns to its examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import registry
from tunelab.errors import DataError

SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".conll": "conll", ".txt": "conll", ".iob": "conll", ".bio": "conll", ".bmes": "bmes",
}


@dataclass(frozen=True)
class ReaderOptions:
    header: bool = True  # delimited files: the first row names the columns
    tag_column: int = -1  # CoNLL files: the column holding the tags


@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def where(self, index: int) -> str:
        """'file:line' of row `index`, for error messages."""
        return f"{self.path}:{self.lines[index]}"


def read_text(path: Path) -> str:
    """The file's text; a clear error for a missing file or for bytes that are not UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path in the data section of the config")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[error.start]:02x}); "
            "re-save the file as UTF-8"
        ) from None


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir() and (path / "seq.in").is_file():
        return "seqio"
    try:
        return SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
            f"set data.format to one of: {', '.join(registry.readers.names())}"
        ) from None


def read_table(path: Path, fmt: str = "auto", options: ReaderOptions | None = None) -> Table:
    reader = registry.readers.get(detect_format(path, fmt))
    table = reader(path, options or ReaderOptions())
    if not table.rows:
        raise DataError(f"{path}: no data rows; add labelled examples to the file")
    return table
