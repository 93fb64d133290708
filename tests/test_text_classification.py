from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv

from tunelab.config import parse_config
from tunelab.data.readers import read_table
from tunelab.errors import DataError
from tunelab.tasks.text_classification import TextClassification


def examples(path: Path, **data: object):
    """The task built from the file's examples (labels from the data), and the examples."""
    config = parse_config({"data": {"train": str(path), **data},
                           "task": {"multi_label": bool(data.pop("multi", False))}})
    ex = TextClassification.examples_from_table(read_table(path), config)
    return TextClassification.from_config(config, ex), ex


def test_labels_are_inferred_and_numbers_sort_numerically(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [("x", "10"), ("y", "2"), ("z", "1"), ("w", "2")])
    task, _ = examples(path)
    assert task.labels == ["1", "2", "10"]


def test_text_pairs_are_read_and_encoded_as_pairs(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    path = write_csv(tmp_path / "a.csv", [("good movie", "great plot", "yes"),
                                          ("bad movie", "dull plot", "no")],
                     header=("a", "b", "label"))
    task, ex = examples(path, text_column="a", text_pair_column="b")
    encoded = task.encode(ex, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert encoded[0]["token_type_ids"].count(1) > 0  # the second segment is marked
    assert encoded[0]["length"] == len(encoded[0]["input_ids"])


def test_multi_label_split_on_separator_and_multi_hot(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [("x", "sports|news"), ("y", "news"), ("z", "tech")])
    config = parse_config({"data": {"train": str(path)}, "task": {"multi_label": True}})
    ex = TextClassification.examples_from_table(read_table(path), config)
    task = TextClassification.from_config(config, ex)
    assert task.labels == ["news", "sports", "tech"]
    assert task.label_ids(ex).tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]


def test_several_labels_without_multi_label_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x", "label": ["a", "b"]}\n')
    with pytest.raises(DataError, match=r"a\.jsonl:1: 2 labels.*multi_label=true"):
        examples(path)


def test_label_unknown_to_training_data_is_named_with_its_line(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [("x", "pos"), ("y", "neg")])
    dev = write_csv(tmp_path / "dev.csv", [("x", "pos"), ("y", "neutral")])
    task, _ = examples(train)
    _, dev_ex = examples(dev)
    with pytest.raises(DataError, match=r"dev\.csv:3: label 'neutral' does not occur"):
        task.check_labels(dev_ex, str(train))


def test_metrics_and_report_match_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    task = TextClassification(["a", "b", "c"])
    gold = np.array([0, 1, 2, 2, 1, 0])
    logits = np.eye(3)[[0, 1, 1, 2, 1, 2]] * 5
    result = task._result(gold, task.decide(logits)[1])
    assert result.metrics["accuracy"] == pytest.approx(4 / 6)
    assert result.metrics["f1_macro"] == pytest.approx(
        f1_score(gold, [0, 1, 1, 2, 1, 2], average="macro"))
    assert "precision" in result.report and "weighted avg" in result.report


def test_majority_baseline_predicts_the_most_common_training_label(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "t.csv", [("x", "a"), ("y", "b"), ("z", "b")])
    task, ex = examples(train)
    assert task.majority_baseline(ex, ex).metrics["accuracy"] == pytest.approx(2 / 3)


def test_dev_and_test_macro_f1_mean_the_same_thing() -> None:
    from tunelab.evaluation.classification import all_metrics, trainer_metrics

    gold = np.array([0, 0, 1, 1, 0])  # label 2 exists in the task but not in this split
    predicted = np.array([0, 1, 1, 1, 0])
    during_training, reported = trainer_metrics(gold, predicted), all_metrics(gold, predicted,
                                                                             False)
    for name in ("accuracy", "f1_macro", "f1_micro", "f1_weighted"):
        assert during_training[name] == pytest.approx(reported[name]), name


def test_a_missing_column_points_at_the_one_that_looks_like_it(tmp_path: Path) -> None:
    rows = [("a good movie here", "pos", "1"), ("a bad film here", "neg", "2"),
            ("fine acting", "pos", "3")]
    path = write_csv(tmp_path / "a.csv", rows, header=("review", "category", "id"))
    with pytest.raises(DataError, match=r"no column 'text'.*'review' looks like it: set "
                                        r"data\.text_column: review"):
        examples(path, label_column="category")
    with pytest.raises(DataError, match=r"no column 'label'.*'category' looks like it"):
        examples(path, text_column="review")
