"""Errors that tunelab reports to a user: one line, what is wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TunelabError(Exception):
    """A problem with the user's input. The CLI prints it as one line and exits with code 2."""

    exit_code = 2


class ConfigError(TunelabError, ValueError):
    """A bad config key or value. A ValueError too, so pydantic validators report its field."""


class DataError(TunelabError):
    """A bad data file: missing, malformed, or inconsistent with the config."""


class ModelError(TunelabError):
    """A model name or directory that cannot be resolved or loaded."""


class ExportError(TunelabError):
    """An export that failed its accuracy check: refused, nothing written."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for the closest choice, or '' when none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
