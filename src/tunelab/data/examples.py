"""Examples: a task's rows in memory, one list per column, each entry one example.

The helpers every task needs (length, subsets, concatenation, where an example came from)
work on any dataclass that follows this layout, so a task module declares only its columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

E = TypeVar("E", bound="Examples")


@dataclass
class Examples:
    source: str
    lines: list[int]

    def __post_init__(self) -> None:
        if not self.lines:  # examples made in memory: number them 1..n
            data = [getattr(self, name) for name in self._columns()[1:]]
            self.lines = list(range(1, len(next((c for c in data if c is not None), [])) + 1))

    def __len__(self) -> int:
        return len(self.lines)

    def _columns(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "source"]

    def subset(self: E, indices: Sequence[int]) -> E:
        picked = {name: [getattr(self, name)[i] for i in indices]
                  for name in self._columns() if getattr(self, name) is not None}
        return replace(self, **picked)

    @classmethod
    def concat(cls: type[E], parts: Sequence[E], source: str = "mixed") -> E:
        """One set of examples from several; a column that any part lacks is left out."""
        columns: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "source":
                continue
            values = [getattr(part, f.name) for part in parts]
            columns[f.name] = (None if any(v is None for v in values)
                               else [item for value in values for item in value])
        return cls(source=source, **columns)

    def where(self, index: int) -> str:
        return f"{self.source}:{self.lines[index]}"

    def inputs(self) -> list[Any]:
        """The examples in the form `predict` takes."""
        raise NotImplementedError

    def plain_texts(self) -> list[str]:
        """Each example as one plain text, for checks such as the unknown-token share."""
        raise NotImplementedError

    def to_rows(self, data: Any) -> tuple[list[str], list[list[Any]]]:
        """(columns, rows) in the layout `data` (a DataConfig) reads, to keep a copy of
        examples made in memory next to the run that trained on them."""
        raise NotImplementedError(f"{type(self).__name__} cannot be written as a table")
