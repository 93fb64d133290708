"""What makes a text unusable, checked once for every way a text comes in: data files,
the command line, the Python API and the service."""

from __future__ import annotations

from typing import Any


def cell_text(value: Any) -> tuple[str, str | None]:
    """A data-file cell as a text, and why it cannot be one (None when it can). A JSON
    number is a text; an object, a list or a bool is not."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        value = ""
    return (value if isinstance(value, str) else ""), text_problem(value)


def text_problem(value: Any) -> str | None:
    """Why `value` cannot be used as a text, or None when it can."""
    if not isinstance(value, str):
        return (f"expected a text, found a JSON {type(value).__name__}" if value is not None
                else "missing text")
    if not value.strip():
        return "empty text"
    if "\x00" in value:
        return "contains a NUL byte (\\x00); remove it"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return (f"contains a lone surrogate at character {error.start + 1} (not valid "
                "Unicode); fix the text's encoding")
    return None
