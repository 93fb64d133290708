"""What makes a text unusable, checked once for every way a text comes in: data files,
the command line, the Python API and the service."""

from __future__ import annotations

from typing import Any


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
