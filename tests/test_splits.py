from collections import Counter

import pytest

from tunelab.data.splits import rare_labels, split_indices
from tunelab.errors import DataError


def test_stratified_split_is_seeded_disjoint_and_keeps_proportions() -> None:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    keep, held = split_indices(len(labels), 0.2, 3, labels, "train.csv", "dev")
    assert sorted(keep + held) == list(range(100))
    assert Counter(labels[i] for i in held) == {"a": 12, "b": 6, "c": 2}
    assert (keep, held) == split_indices(len(labels), 0.2, 3, labels, "train.csv", "dev")
    assert held != split_indices(len(labels), 0.2, 4, labels, "train.csv", "dev")[1]


def test_a_class_with_one_example_stays_in_training() -> None:
    labels = ["a"] * 10 + ["c"] * 10 + ["b"]
    keep, held = split_indices(len(labels), 0.2, 0, labels, "train.csv", "dev")
    assert 20 in keep and 20 not in held
    assert Counter(labels[i] for i in held) == {"a": 2, "c": 2}
    assert rare_labels(labels) == {"b": 1}


def test_no_label_with_two_examples_leaves_nothing_to_hold_out() -> None:
    labels = ["a", "b", "c"]
    with pytest.raises(DataError, match=r"no label has two or more examples.*data\.dev"):
        split_indices(len(labels), 0.2, 0, labels, "train.csv", "dev")


def test_unstratified_split_for_multi_label() -> None:
    keep, held = split_indices(10, 0.3, 0, None, "train.csv", "test")
    assert len(held) == 3 and not set(keep) & set(held)
