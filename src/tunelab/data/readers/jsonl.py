"""JSON Lines: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.data.readers import ReaderOptions, Table, read_text
from tunelab.errors import DataError


def read_jsonl(path: Path, options: ReaderOptions) -> Table:
    table = Table(path=path, columns=[])
    seen: dict[str, None] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}:{number}: invalid JSON ({error.msg}, column {error.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        seen.update(dict.fromkeys(row))
        table.rows.append(row)
        table.lines.append(number)
    table.columns = list(seen)
    return table
