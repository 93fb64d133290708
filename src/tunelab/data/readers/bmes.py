"""Character-level lines (Chinese NER): characters separated by spaces, a TAB, then one
tag per character separated by spaces."""

from __future__ import annotations

from pathlib import Path

from tunelab.data.readers import ReaderOptions, Table, read_text
from tunelab.errors import DataError


def read_bmes(path: Path, options: ReaderOptions) -> Table:
    table = Table(path=path, columns=["tokens", "tags"])
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        chars, tab, tags = line.partition("\t")
        if not tab:
            raise DataError(f"{path}:{number}: no TAB between the characters and the tags; "
                            "write 'c h a r s<TAB>T A G S'")
        table.rows.append({"tokens": chars.split(" "), "tags": tags.split()})
        table.lines.append(number)
    return table
