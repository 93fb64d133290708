from collections import Counter

import pytest

from tunelab.data.splits import split_indices
from tunelab.errors import DataError


def test_stratified_split_is_seeded_disjoint_and_keeps_proportions() -> None:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    keep, held = split_indices(len(labels), 0.2, 3, labels, "train.csv", "dev")
    assert sorted(keep + held) == list(range(100))
    assert Counter(labels[i] for i in held) == {"a": 12, "b": 6, "c": 2}
    assert (keep, held) == split_indices(len(labels), 0.2, 3, labels, "train.csv", "dev")
    assert held != split_indices(len(labels), 0.2, 4, labels, "train.csv", "dev")[1]


def test_class_too_small_for_a_stratified_split() -> None:
    labels = ["a"] * 10 + ["b"]
    with pytest.raises(DataError, match=r"label 'b' has 1 example.*data\.dev"):
        split_indices(len(labels), 0.2, 0, labels, "train.csv", "dev")


def test_unstratified_split_for_multi_label() -> None:
    keep, held = split_indices(10, 0.3, 0, None, "train.csv", "test")
    assert len(held) == 3 and not set(keep) & set(held)
