"""Text classification data: a table's rows as examples (one text or a pair, and one
label or several), with one-line errors naming the file, line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunelab.data.examples import Examples
from tunelab.data.readers import Table
from tunelab.data.text_checks import cell_text
from tunelab.errors import DataError, did_you_mean


@dataclass
class TextExamples(Examples):
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]  # a label per example, or a list of labels when multi-label

    def inputs(self) -> list[Any]:
        if self.pairs is None:
            return list(self.texts)
        return [[a, b] for a, b in zip(self.texts, self.pairs, strict=True)]

    def plain_texts(self) -> list[str]:
        return list(self.texts)

    def to_rows(self, data: Any) -> tuple[list[str], list[list[Any]]]:
        columns = [data.text_column, *([data.text_pair_column] if self.pairs is not None
                                       else []), data.label_column]
        joined = [data.label_separator.join(lab) if isinstance(lab, list) else lab
                  for lab in self.labels]
        rows = zip(self.texts, *([self.pairs] if self.pairs is not None else []), joined,
                   strict=True)
        return [str(c) for c in columns], [list(row) for row in rows]



def read_text_examples(table: Table, data: Any, multi_label: bool) -> TextExamples:
    """A table's rows as text examples: the configured columns, each cell checked."""
    text_col = _column(table, data.text_column, "text_column")
    pair_col = (_column(table, data.text_pair_column, "text_pair_column")
                if data.text_pair_column else None)
    label_col = _column(table, data.label_column, "label_column")
    texts, pairs, labels = [], [] if pair_col else None, []
    for i, row in enumerate(table.rows):
        texts.append(_text(row, text_col, table, i))
        if pairs is not None:
            pairs.append(_text(row, pair_col, table, i))
        labels.append(_labels(row.get(label_col), label_col, data.label_separator,
                                  table, i, multi_label))
    return TextExamples(str(table.path), table.lines, texts, pairs, labels)


def _text(row: dict[str, Any], column: str, table: Table, i: int) -> str:
    text, problem = cell_text(row.get(column))
    if problem:
        raise DataError(f"{table.where(i)}: column '{column}': {problem}; fix the text or "
                        "remove the row")
    return text


def _labels(value: Any, column: str, separator: str, table: Table, i: int,
            multi_label: bool) -> Any:
    if isinstance(value, list):
        found = [str(v).strip() for v in value]
    elif value is None:
        found = []
    else:
        whole = isinstance(value, float) and value.is_integer()  # JSON 1.0 -> label "1"
        text = str(int(value)) if whole else str(value)
        parts = [part for part in text.split(separator) if part.strip()]
        if not multi_label and len(parts) > 1:
            raise DataError(
                f"{table.where(i)}: label '{text}' looks like {len(parts)} labels joined "
                f"by '{separator}'; set task.multi_label=true for several labels per row, "
                "or set data.label_separator to a character the labels do not contain")
        found = parts if multi_label else [text]
    found = [label.strip() for label in found if label.strip()]
    if not found:
        raise DataError(
            f"{table.where(i)}: empty label in column '{column}'; every row needs a label"
        )
    if not multi_label and len(found) > 1:
        raise DataError(
            f"{table.where(i)}: {len(found)} labels in column '{column}'; set "
            "task.multi_label=true for several labels per row"
        )
    return sorted(set(found)) if multi_label else found[0]


def natural_key(label: str) -> tuple[int, float | str]:
    """Numeric labels sort as numbers (2 before 10), others alphabetically."""
    return (0, float(label)) if re.fullmatch(r"-?\d+(\.\d+)?", label) else (1, label)


def _column(table: Table, name: str, field: str) -> str:
    if name not in table.columns:
        hint = did_you_mean(name, table.columns) or _looks_like(table, field)
        raise DataError(
            f"{table.path}: no column '{name}' (data.{field}){hint}; "
            f"the file has columns: {', '.join(table.columns)}"
        )
    return name


def _looks_like(table: Table, field: str) -> str:
    """The column that looks like what `field` names: for text, the one with the longest
    values with spaces in them; for labels, the one with the fewest distinct values."""
    sample = table.rows[:200]
    values = {column: [str(row.get(column) or "") for row in sample] for column in table.columns}
    if field == "label_column":
        score = {c: -len(set(v)) for c, v in values.items() if v and len(set(v)) < len(v)}
    else:
        score = {c: sum(map(len, v)) / len(v) for c, v in values.items()
                 if v and sum(" " in x for x in v) > len(v) / 2}
    if not score:
        return ""
    best = max(score, key=score.__getitem__)
    return f" ('{best}' looks like it: set data.{field}: {best})"
