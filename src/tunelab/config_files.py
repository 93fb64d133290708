"""The config file as YAML and the `--set KEY=VALUE` overrides on it, before validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import ConfigError


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; create one with `tunelab init {path}`")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8; re-save the config as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{line}: {problem}; fix the YAML syntax") from None
    return raw or {}


def apply_override(raw: dict[str, Any], assignment: str, flag: str = "--set",
                   example: str = "training.lr=3e-5") -> None:
    """Apply one `--set a.b.c=value` override to a raw dict; the value is parsed as YAML."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {assignment}: expected KEY=VALUE, for example {example}")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if isinstance(child, str) and part == "method":
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"{flag} {assignment}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
