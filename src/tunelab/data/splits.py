"""Seeded train/dev/test splits, stratified by label where the task allows it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from tunelab.errors import DataError


def split_indices(
    n: int,
    fraction: float,
    seed: int,
    strata: Sequence[Hashable] | None,
    source: str,
    role: str,
) -> tuple[list[int], list[int]]:
    """Split range(n) into (keep, held_out) with `fraction` held out, stratified by `strata`."""
    if strata is not None:
        counts = Counter(strata)
        small = sorted((count, str(label)) for label, count in counts.items() if count < 2)
        if small:
            count, label = small[0]
            raise DataError(
                f"{source}: label '{label}' has {count} example, too few for a stratified "
                f"{role} split (needs at least 2 per class); add examples of it, or give "
                f"data.{role} explicitly"
            )
        n_held = max(round(n * fraction), len(counts))
        if n - n_held < len(counts):
            raise DataError(
                f"{source}: {n} rows are too few to hold out a stratified {role} split for "
                f"{len(counts)} labels; add examples, or give data.{role} explicitly"
            )
    else:
        n_held = max(round(n * fraction), 1)
    keep, held = train_test_split(
        np.arange(n), test_size=n_held, random_state=seed,
        stratify=list(strata) if strata is not None else None,
    )
    return sorted(keep.tolist()), sorted(held.tolist())
