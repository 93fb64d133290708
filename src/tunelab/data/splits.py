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
    """Split range(n) into (keep, held_out) with `fraction` held out, stratified by `strata`.
    Examples of a label with a single example stay in `keep`: such a label can be learned
    from, but not evaluated (real intent data has them; see rare_labels)."""
    if strata is None:
        keep, held = train_test_split(np.arange(n), test_size=max(round(n * fraction), 1),
                                      random_state=seed)
        return sorted(keep.tolist()), sorted(held.tolist())
    rare = set(rare_labels(strata))
    pool = [i for i in range(n) if strata[i] not in rare]
    classes = len({strata[i] for i in pool})
    n_held = max(round(len(pool) * fraction), classes)
    if classes == 0:
        raise DataError(f"{source}: no label has two or more examples, so none can be held "
                        f"out for a {role} split; add examples, or give data.{role} explicitly")
    if len(pool) - n_held < classes:
        raise DataError(
            f"{source}: {n} rows are too few to hold out a stratified {role} split for "
            f"{classes} labels; add examples, or give data.{role} explicitly"
        )
    keep, held = train_test_split(np.array(pool), test_size=n_held, random_state=seed,
                                  stratify=[strata[i] for i in pool])
    keep_all = keep.tolist() + [i for i in range(n) if strata[i] in rare]
    return sorted(keep_all), sorted(held.tolist())


def rare_labels(strata: Sequence[Hashable]) -> dict[str, int]:
    """Labels with fewer than two examples: trained on, never held out."""
    return {str(label): count for label, count in sorted(Counter(strata).items(),
                                                         key=lambda kv: str(kv[0]))
            if count < 2}
