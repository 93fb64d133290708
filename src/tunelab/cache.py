"""Where tunelab keeps what it can rebuild: tokenized datasets, assembled model weights."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """`TUNELAB_CACHE_DIR`, else ~/.cache/tunelab."""
    configured = os.environ.get("TUNELAB_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tunelab"
