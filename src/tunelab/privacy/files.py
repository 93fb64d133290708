"""`tunelab mask`: a data file with its personal data replaced, in the same format."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunelab.data.readers import ReaderOptions, detect_format, read_table
from tunelab.errors import DataError
from tunelab.privacy.examples import masker_for
from tunelab.privacy.options import MaskOptions
from tunelab.rundir import write_jsonl, write_text

WRITTEN = ("csv", "tsv", "jsonl", "conll")


def _delimited(columns: Sequence[str], rows: list[dict[str, Any]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), delimiter=delimiter,
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def mask_file(path: Path, output: Path, options: MaskOptions, columns: Sequence[str] | None
              ) -> dict[str, int]:
    """Write `path` masked to `output`; how many values of each type it replaced. Text
    files: the named columns (default: text). CoNLL files: the tokens, one placeholder per
    covered token, so the tags still line up (extra columns are not kept)."""
    fmt = detect_format(path)
    if fmt not in WRITTEN:
        raise DataError(f"{path}: tunelab mask writes {', '.join(WRITTEN)} files, not {fmt}; "
                        "convert it, or set data.mask_pii in the run's config")
    if output.resolve() == path.resolve():
        raise DataError(f"--output {output}: is the input file; give another path, so the "
                        "original stays until you have checked the masked copy")
    table = read_table(path, fmt, ReaderOptions())
    masker = masker_for(options.model_dump_json())
    with masker.session():
        if fmt == "conll":
            tokens = masker.mask_tokens([row["tokens"] for row in table.rows])
            text = "\n".join("".join(f"{token} {tag}\n" for token, tag in
                                     zip(words, row["tags"], strict=True))
                             for words, row in zip(tokens, table.rows, strict=True))
            write_text(output, text)
        else:
            wanted = list(columns or ["text"])
            missing = [c for c in wanted if c not in table.columns]
            if missing:
                raise DataError(f"{path}: no column '{missing[0]}' (columns: "
                                f"{', '.join(table.columns)}); name the text columns with "
                                "--columns")
            rows = [dict(row) for row in table.rows]
            for column in wanted:
                masked = masker.mask([str(row.get(column) or "") for row in rows])
                for row, value in zip(rows, masked, strict=True):
                    if row.get(column) is not None:
                        row[column] = value
            if fmt == "jsonl":
                write_jsonl(output, rows)
            else:
                write_text(output, _delimited(table.columns, rows, "," if fmt == "csv"
                                              else "\t"))
        return dict(masker.made)
