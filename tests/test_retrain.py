"""Continual retraining: head rows carried over by label, rehearsal, and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import sentiment_rows, write_csv

import tunelab
from tunelab.config import parse_config
from tunelab.models import resolve_model
from tunelab.predictor import Predictor
from tunelab.retrain import RetrainOptions, retrain
from tunelab.store import records
from tunelab.tasks.text_classification import TextClassification

NEUTRAL = ("neutral",)


@pytest.fixture
def base_run(tiny_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Path:
    monkeypatch.setenv("TUNELAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)
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


def retrain_options(tmp_path: Path, rows: list[tuple[str, str]], **changes: Any
                    ) -> RetrainOptions:
    data = write_csv(tmp_path / "new.csv", rows)
    return RetrainOptions(**{"data": data, "epochs": 8, "lr": 2e-3, **changes})


def test_retrain_with_rehearsal_learns_the_new_label_and_is_promoted(
        base_run: Path, tmp_path: Path) -> None:
    rows = sentiment_rows(60, seed=9, labels=NEUTRAL)
    result = retrain(base_run, retrain_options(tmp_path, rows, without_rehearsal=True,
                                               epochs=15))
    report = json.loads((result.run_dir / "retrain.json").read_text())
    assert report["labels_added"] == ["neutral"]
    assert Predictor(result.run_dir).labels == ["negative", "positive", "neutral"]
    scores = report["scores"]
    assert scores["before"]["new_holdout"] == 0.0  # the old model cannot say "neutral"
    assert scores["with_rehearsal"]["new_holdout"] > scores["before"]["new_holdout"]
    assert set(scores) == {"before", "with_rehearsal", "without_rehearsal"}
    assert result.promoted == (not result.reasons)
    if result.promoted:
        assert records.production().path == str(result.run_dir.resolve())
    assert "original test accuracy" in (result.run_dir / "retrain.md").read_text()


def test_gate_refuses_a_model_that_forgot(base_run: Path, tmp_path: Path) -> None:
    # only "neutral" examples and no rehearsal: the model unlearns negative/positive
    rows = sentiment_rows(40, seed=4, labels=NEUTRAL)
    result = retrain(base_run, retrain_options(tmp_path, rows, rehearsal=0.0))
    assert not result.promoted
    assert any("forgot" in reason for reason in result.reasons), result.reasons
    assert records.production() is None
    assert "Kept as a candidate" in (result.run_dir / "retrain.md").read_text()
