"""The paired-line format: a folder with `seq.in` (space-separated tokens) and `seq.out`
(one tag per token), aligned line by line; an optional `label` file holds an intent a line."""

from __future__ import annotations

from pathlib import Path

from tunelab.data.readers import ReaderOptions, Table, read_text
from tunelab.errors import DataError


def read_seqio(path: Path, options: ReaderOptions) -> Table:
    folder = path if path.is_dir() else path.parent
    inputs = read_text(folder / "seq.in").splitlines()
    outputs = read_text(folder / "seq.out").splitlines()
    intents = (read_text(folder / "label").splitlines() if (folder / "label").is_file()
               else None)
    if len(inputs) != len(outputs):
        raise DataError(f"{folder}: seq.in has {len(inputs)} lines but seq.out has "
                        f"{len(outputs)}; the files must be aligned line by line")
    table = Table(path=folder / "seq.in", columns=["tokens", "tags"] + (["label"] if intents
                                                                       else []))
    for number, (words, tags) in enumerate(zip(inputs, outputs, strict=True), start=1):
        if not words.strip() and not tags.strip():
            continue
        row = {"tokens": words.split(), "tags": tags.split()}
        if intents is not None and number <= len(intents):
            row["label"] = intents[number - 1].strip()
        table.rows.append(row)
        table.lines.append(number)
    return table
