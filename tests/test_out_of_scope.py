"""Out-of-scope detection: a threshold on the in-scope score, fitted on dev, turns unsure
predictions into the out-of-scope label, in the report, after reload and after export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import sentiment_rows, write_csv

import tunelab
from tunelab.config import parse_config
from tunelab.errors import TunelabError
from tunelab.predictor import Predictor
from tunelab.tasks.out_of_scope import (
    OOS_ID,
    OutOfScopeOptions,
    fit_threshold,
    in_scope_scores,
    oos_metrics,
)

OOS = ("negative", "positive", "out_of_scope")  # the third label's rows have no cue word


def oos_config(tiny_config: dict[str, Any], tmp_path: Path, **oos: Any) -> dict[str, Any]:
    data = {**tiny_config["data"],
            "dev": str(write_csv(tmp_path / "dev_oos.csv", sentiment_rows(36, 2, OOS))),
            "test": str(write_csv(tmp_path / "test_oos.csv", sentiment_rows(36, 3, OOS)))}
    return {**tiny_config, "data": data,
            "task": {"type": "text-classification", "out_of_scope": oos}}


def test_threshold_meets_the_recall_target_on_the_scores_it_is_fitted_on() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.5, 1.0, 200), rng.uniform(0.3, 0.8, 100)])
    oos = np.arange(300) >= 200
    for target in (0.5, 0.8, 0.95):
        threshold = fit_threshold(scores, oos, OutOfScopeOptions(target_recall=target))
        assert (scores[oos] < threshold).mean() >= target
        assert (scores[oos] < threshold).mean() < target + 0.02  # no lower than it needs
    precise = fit_threshold(scores, oos, OutOfScopeOptions(target_in_scope_precision=0.9))
    kept = scores >= precise
    assert (~oos[kept]).mean() >= 0.9


def test_energy_keeps_the_size_of_the_logits_that_softmax_discards() -> None:
    logits = np.array([[2.0, 0.0], [20.0, 18.0]])
    msp, energy = in_scope_scores(logits, "msp"), in_scope_scores(logits, "energy")
    assert msp[0] == pytest.approx(msp[1])
    assert energy[1] > energy[0] + 15
    assert oos_metrics(np.array([0, OOS_ID, 1]), np.array([OOS_ID, OOS_ID, 1])) == {
        "in_scope_accuracy": 0.5, "oos_recall": 1.0, "oos_precision": 0.5}


def test_a_run_fits_the_threshold_on_dev_and_reports_out_of_scope_on_test(
        tiny_config: dict[str, Any], tmp_path: Path) -> None:
    result = tunelab.train(parse_config(oos_config(tiny_config, tmp_path, target_recall=0.75)),
                           overwrite=True)
    record = result.record
    fitted = record.out_of_scope
    assert fitted is not None and fitted["score"] == "msp"
    assert fitted["dev_oos_recall"] >= 0.75
    for key in ("in_scope_accuracy", "oos_recall", "oos_precision"):
        assert 0.0 <= record.test[key] <= 1.0
    assert (result.run_dir / "out_of_scope.png").is_file()
    saved = [json.loads(line) for line in
             (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    said = [row["label"] == "out_of_scope" for row in saved]
    assert np.mean([s for s, row in zip(said, saved, strict=True)
                    if row["gold"] == "out_of_scope"]) == pytest.approx(record.test["oos_recall"])
    meta = json.loads((result.run_dir / "model" / "tunelab.json").read_text())
    assert meta["out_of_scope"]["threshold"] == fitted["threshold"]
    again = Predictor(result.run_dir, "torch").predict([row["text"] for row in saved])
    assert [p["label"] for p in again] == [row["label"] for row in saved]
    tunelab.api.export(result.run_dir, min_agreement=0.0, max_drop_points=100.0)
    onnx = Predictor(result.run_dir, "onnx-fp32").predict([row["text"] for row in saved])
    agree = np.mean([a["label"] == b["label"] for a, b in zip(onnx, again, strict=True)])
    assert agree >= 0.95  # the same threshold on the exported model's logits


def test_out_of_scope_rows_in_train_are_learned_as_a_class_of_their_own(
        tiny_config: dict[str, Any], tmp_path: Path) -> None:
    raw = oos_config(tiny_config, tmp_path, target_recall=0.5)
    raw["data"]["train"] = str(write_csv(tmp_path / "train_oos.csv", sentiment_rows(144, 1, OOS)))
    raw["training"] = {**raw["training"], "epochs": 16, "early_stopping": {"patience": 8}}
    result = tunelab.train(parse_config(raw), overwrite=True)
    config = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == sorted(OOS)  # plain transformers sees it
    record = result.record
    # the out-of-scope rows' own word is learned: the class finds them, not the threshold
    assert record.test["oos_recall"] >= 0.9 and record.test["in_scope_accuracy"] >= 0.9
    assert np.isfinite(record.out_of_scope["threshold"])
    saved = [json.loads(line) for line in
             (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    by_class = [row for row in saved if row["label"] == "out_of_scope"
                and max(row["probabilities"], key=row["probabilities"].get) == "out_of_scope"]
    assert by_class  # the class itself decides, not only the threshold
    again = Predictor(result.run_dir, "torch").predict([row["text"] for row in saved])
    assert [p["label"] for p in again] == [row["label"] for row in saved]
    tunelab.api.export(result.run_dir, min_agreement=0.0, max_drop_points=100.0)
    onnx = Predictor(result.run_dir, "onnx-fp32").predict([row["text"] for row in saved])
    assert np.mean([a["label"] == b["label"] for a, b in zip(onnx, again, strict=True)]) >= 0.95


def test_a_dev_file_without_out_of_scope_rows_is_refused_before_the_run(
        tiny_config: dict[str, Any], tmp_path: Path) -> None:
    raw = oos_config(tiny_config, tmp_path, target_recall=0.8)
    raw["data"]["dev"] = tiny_config["data"]["dev"]
    with pytest.raises(TunelabError, match=r"dev\.csv: task\.out_of_scope needs dev data with "
                                           r"out-of-scope examples"):
        tunelab.train(parse_config(raw))
    assert not (Path(tiny_config["output_dir"]) / "tiny").exists()


def test_two_targets_at_once_are_one_config_error(tiny_config: dict[str, Any],
                                                   tmp_path: Path) -> None:
    raw = oos_config(tiny_config, tmp_path, target_recall=0.8, target_in_scope_precision=0.9)
    with pytest.raises(TunelabError, match=r"task\.out_of_scope: set target_recall or "
                                           r"target_in_scope_precision, not both"):
        tunelab.train(parse_config(raw))


def test_zero_shot_with_out_of_scope_needs_a_dev_file_of_its_own(tmp_path: Path) -> None:
    test = write_csv(tmp_path / "test.csv", sentiment_rows(12, 3, OOS))
    raw = {"name": "zs", "output_dir": str(tmp_path / "runs"), "method": "zero-shot",
           "task": {"type": "text-classification", "labels": ["negative", "positive"],
                    "out_of_scope": {}}, "data": {"test": str(test)}}
    with pytest.raises(TunelabError, match=r"test\.csv: task\.out_of_scope fits its threshold "
                                           r"on a dev file of its own"):
        tunelab.train(parse_config(raw))
    assert not (tmp_path / "runs" / "zs").exists()
