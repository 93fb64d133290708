"""Mask the texts of a task's examples."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from tunelab.privacy.options import MaskOptions


@functools.lru_cache(maxsize=4)
def masker_for(options_json: str) -> Any:
    """Built once per process and setting: presidio and a names run take seconds to load."""
    from tunelab.privacy.masker import Masker

    return Masker(MaskOptions.model_validate_json(options_json))


def mask_examples(examples: Any, options: MaskOptions) -> Any:
    """The examples with their text columns masked: `texts` and `pairs` (text
    classification), `tokens` (token classification, a token per placeholder)."""
    masker = masker_for(options.model_dump_json())
    changes: dict[str, Any] = {}
    with masker.session():
        for column in ("texts", "pairs"):
            if getattr(examples, column, None) is not None:
                changes[column] = masker.mask(getattr(examples, column))
        if getattr(examples, "tokens", None) is not None:
            changes["tokens"] = masker.mask_tokens(examples.tokens)
    return replace(examples, **changes)
