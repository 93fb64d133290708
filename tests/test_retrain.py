"""Continual retraining: head growth for new labels, rehearsal, and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import sentiment_rows, write_csv

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ModelError
from tunelab.models import resolve_model
from tunelab.predictor import Predictor
from tunelab.retrain import RetrainOptions, concat, retrain
from tunelab.store import records
from tunelab.tasks.head_growth import grow_head, head_inputs
from tunelab.tasks.text_classification import TextClassification, TextExamples

NEUTRAL = ("neutral",)


@pytest.fixture(autouse=True)
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own store, so that no production model carries over."""
    monkeypatch.setenv("TUNELAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def base_run(tiny_config: dict[str, Any]) -> Path:
    # the head starts from the probe, as these tests' thresholds were set on the tiny
    # model's 32-wide features with that start (head_init: auto would start it random)
    tiny_config["training"] |= {"head_init": "probe"}
    return tunelab.train(parse_config(tiny_config)).run_dir


def test_a_new_label_extends_the_head_and_keeps_the_old_rows(base_run: Path) -> None:
    old = Predictor(base_run, "torch")
    task = TextClassification(["negative", "positive", "neutral"])
    grown = task.build_model(resolve_model(str(old.model_dir))).eval()
    batch = old.tokenizer(["the movie was great", "awful plot"], return_tensors="pt",
                          padding=True)
    with torch.no_grad():
        before = old.model(**batch).logits
        after = grown(**batch).logits
    assert after.shape[-1] == 3
    torch.testing.assert_close(after[:, :2], before)


def test_grown_rows_are_fitted_before_training_and_old_logits_stay(base_run: Path) -> None:
    old = Predictor(base_run, "torch")
    new = TextExamples("new", [], [t for t, _ in sentiment_rows(30, 5, NEUTRAL)], None,
                       list(NEUTRAL) * 30)
    seen = TextExamples("old", [], [t for t, _ in sentiment_rows(30, 6)], None,
                        [lab for _, lab in sentiment_rows(30, 6)])
    calibration = concat(new, seen)
    with head_inputs(old.model, 2):
        features = torch.from_numpy(old.task.logits_for_examples(old.model, old.tokenizer,
                                                                 calibration))
    assert features.shape == (60, old.model.config.hidden_size)
    assert old.model.classifier.out_features == 2  # the head is back in place
    grown = grow_head(old.model, old.labels, [*old.labels, *NEUTRAL], features,
                      calibration.labels).eval()
    batch = old.tokenizer(list(calibration.texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        before, after = old.model(**batch).logits, grown(**batch).logits
    torch.testing.assert_close(after[:, :2], before)
    predicted = after.argmax(-1)
    assert (predicted[:30] == 2).float().mean() > 0.8, "new rows fitted to the new label"
    # the tiny model's 32-wide features barely separate neutral from positive, so some old
    # examples go to the new row; most must keep their label
    gold = torch.tensor([old.labels.index(label) for label in seen.labels])
    assert (predicted[30:] == gold).float().mean() >= 0.6, "old examples keep their label"
    with pytest.raises(ModelError, match="no examples of the new label"):
        grow_head(old.model, old.labels, [*old.labels, "mixed"], features, calibration.labels)


def retrain_options(tmp_path: Path, rows: list[tuple[str, str]], **changes: Any
                    ) -> RetrainOptions:
    data = write_csv(tmp_path / "new.csv", rows)
    return RetrainOptions(**{"data": data, "epochs": 8, "lr": 2e-3, **changes})


def test_retrain_with_rehearsal_learns_the_new_label_and_is_promoted(
        base_run: Path, tmp_path: Path) -> None:
    rows = sentiment_rows(60, seed=9, labels=NEUTRAL)
    # the tiny test set has 24 examples, so the tolerance is one of them (4.17 points)
    result = retrain(base_run, retrain_options(tmp_path, rows, without_rehearsal=True,
                                               epochs=15, tolerance=4.2))
    report = json.loads((result.run_dir / "retrain.json").read_text())
    assert report["labels_added"] == ["neutral"]
    assert Predictor(result.run_dir).labels == ["negative", "positive", "neutral"]
    scores = report["scores"]
    assert scores["before"]["new_holdout"] == 0.0  # the old model cannot say "neutral"
    assert scores["with_rehearsal"]["new_holdout"] > scores["before"]["new_holdout"]
    assert set(scores) == {"before", "grown_head", "with_rehearsal", "without_rehearsal"}
    assert scores["grown_head"]["new_holdout"] > 0.5  # fitted rows already name the new label
    assert result.promoted, result.reasons
    assert records.production().path == str(result.run_dir.resolve())
    assert "original test accuracy" in (result.run_dir / "retrain.md").read_text()


def test_gate_refuses_a_model_that_forgot(store_url: str, base_run: Path, tmp_path: Path
                                          ) -> None:
    # only "neutral" examples and no rehearsal: the model unlearns negative/positive
    rows = sentiment_rows(40, seed=4, labels=NEUTRAL)
    result = retrain(base_run, retrain_options(tmp_path, rows, rehearsal=0.0))
    assert not result.promoted
    assert any("forgot" in reason for reason in result.reasons), result.reasons
    assert records.production() is None
    assert "Kept as a candidate" in (result.run_dir / "retrain.md").read_text()
