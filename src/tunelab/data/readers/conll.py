"""CoNLL column files: a token per line, columns split by white space, a blank line between
sentences, `-DOCSTART-` lines between documents."""

from __future__ import annotations

from pathlib import Path

from tunelab.data.readers import ReaderOptions, Table, read_text
from tunelab.errors import DataError


def read_conll(path: Path, options: ReaderOptions) -> Table:
    table = Table(path=path, columns=["tokens", "tags"])
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width = 0

    def flush() -> None:
        if tokens:
            table.rows.append({"tokens": list(tokens), "tags": list(tags)})
            table.lines.append(start)
            tokens.clear()
            tags.clear()

    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        if width == 0:
            width = len(fields)
        if len(fields) != width or len(fields) < 2:
            raise DataError(
                f"{path}:{number}: expected {max(width, 2)} columns (token ... tag), found "
                f"{len(fields)}; every token line needs the same columns"
            )
        if not tokens:
            start = number
        tokens.append(fields[0])
        try:
            tags.append(fields[options.tag_column])
        except IndexError:
            raise DataError(f"{path}:{number}: no column {options.tag_column} for the tag; "
                            f"set data.tag_column (lines have {len(fields)})") from None
    flush()
    return table
