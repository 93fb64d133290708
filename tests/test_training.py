"""End-to-end runs of the tiny random BERT through the real Trainer."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import sentiment_rows, write_csv

import tunelab
from tunelab.config import parse_config
from tunelab.record import RunRecord
from tunelab.runner import RunResult


def train(raw: dict[str, Any], **overrides: Any) -> RunResult:
    return tunelab.train(parse_config({**raw, **overrides}), overwrite=True)


def read_predictions(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def test_run_directory_holds_everything(tiny_config: dict[str, Any]) -> None:
    result = train(tiny_config)
    run = result.run_dir
    for name in ("config.yaml", "metrics.json", "report.txt", "curves.png", "confusion.png",
                 "README.md", "predictions.jsonl", "model/config.json", "model/tunelab.json",
                 "model/tokenizer.json", "model/model.safetensors"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["seconds"] > 0 and metrics["train"]["samples_per_second"] > 0
    assert metrics["peak_rss_mb"] > 0
    assert set(metrics["baselines"]) == {"majority", "probe"}
    for key in ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
                "recall_weighted"):
        assert 0.0 <= metrics["test"][key] <= 1.0
    assert json.loads((run / "model/config.json").read_text())["id2label"] == {
        "0": "negative", "1": "positive"}
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["training"]["lr"] == pytest.approx(tiny_config["training"]["lr"])
    assert "gain over majority class" in result.report and "weighted avg" in result.report
    assert "## Limits" in (run / "README.md").read_text()
    assert RunRecord.read(run).test == metrics["test"]  # metrics.json is the typed record


def test_the_model_card_is_a_hugging_face_card_with_the_test_metrics(
        tiny_config: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard

    run = train(tiny_config).run_dir
    card = ModelCard.load(run / "README.md")  # the hub's own parser
    [result] = card.data.to_dict()["model-index"][0]["results"]
    record = RunRecord.read(run)
    shown = {m["type"]: m["value"] for m in result["metrics"]}
    assert shown == {name: pytest.approx(record.test[name])
                     for name in ("accuracy", "f1_macro", "f1_micro", "f1_weighted")}
    assert card.data.pipeline_tag == "text-classification" and "tunelab" in card.data.tags
    assert card.data.base_model == str(tiny_config["model"]["name"])
    assert "tunelab.load(" in card.text and "## Intended use" in card.text


def losses(result: RunResult) -> list[float]:
    history = json.loads((result.run_dir / "log_history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


def test_same_config_and_seed_give_the_same_metrics(tiny_config: dict[str, Any]) -> None:
    first = train(tiny_config)
    first_losses, first_predictions = losses(first), read_predictions(first.run_dir)
    second = train(tiny_config)
    assert second.metrics["test"] == first.metrics["test"]
    assert losses(second) == first_losses
    assert read_predictions(second.run_dir) == first_predictions
    assert first.metrics["test"]["accuracy"] > 0.9  # it learned something to reproduce
    other = train(tiny_config, seed=8)
    assert losses(other) != first_losses


def test_lora_run_reloads_with_the_same_predictions(tiny_config: dict[str, Any]) -> None:
    result = train(tiny_config, method={"name": "lora", "r": 4, "target_modules": "all-linear"})
    run = result.run_dir
    assert (run / "model/adapter_config.json").is_file()
    assert not (run / "model/model.safetensors").exists()  # only the adapter and head
    assert result.metrics["train"]["trainable_parameters"] < \
        result.metrics["train"]["total_parameters"] / 2

    saved = read_predictions(run)
    predictor = tunelab.load(run)
    again = predictor.predict([row["text"] for row in saved])
    for before, after in zip(saved, again, strict=True):
        assert after["label"] == before["label"]
        for label, p in before["probabilities"].items():
            assert after["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_lora_trains_and_saves_the_head(tiny_config: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    run = train(tiny_config, method={"name": "lora", "r": 4}).run_dir
    weights = load_file(run / "model/adapter_model.safetensors")
    assert any("classifier" in key for key in weights), list(weights)


def test_head_only_leaves_the_encoder_unchanged(tiny_config: dict[str, Any],
                                                tiny_model_dir: Path) -> None:
    from transformers import AutoModel

    run = train(tiny_config, method="head").run_dir
    base = AutoModel.from_pretrained(tiny_model_dir).state_dict()
    tuned = tunelab.load(run).model
    encoder = tuned.bert.state_dict()
    assert torch.equal(encoder["encoder.layer.0.attention.self.query.weight"],
                       base["encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(encoder["embeddings.word_embeddings.weight"],
                       base["embeddings.word_embeddings.weight"])
    assert not torch.equal(encoder["pooler.dense.weight"], base["pooler.dense.weight"])


def test_early_stopping_restores_the_best_checkpoint(tiny_config: dict[str, Any]) -> None:
    raw = {**tiny_config, "training": {**tiny_config["training"], "epochs": 10, "lr": 5e-3,
                                       "early_stopping": {"patience": 2}}}
    result = train(raw)
    history = json.loads((result.run_dir / "log_history.json").read_text())
    dev_scores = [e["eval_accuracy"] for e in history if "eval_accuracy" in e]
    dev_file = tiny_config["data"]["dev"]
    evaluated, _ = tunelab.evaluate(result.run_dir, dev_file)
    assert evaluated.metrics["accuracy"] == pytest.approx(max(dev_scores))
    assert result.metrics["train"]["best_dev_metric"] == pytest.approx(max(dev_scores))


@pytest.mark.parametrize(("min_epochs", "earliest"), [(6, 6.0), (1, 5.0)])
def test_early_stopping_waits_for_min_epochs_and_half_the_plan(
        tiny_config: dict[str, Any], min_epochs: int, earliest: float) -> None:
    # lr 1e-6 and a random head: the dev score never improves, so patience 1 would stop at
    # the second evaluation
    raw = {**tiny_config, "training": {**tiny_config["training"], "epochs": 10, "lr": 1e-6,
                                       "eval_every": 4, "head_init": "keep",
                                       "early_stopping": {"patience": 1,
                                                          "min_epochs": min_epochs}}}
    result = train(raw)
    assert earliest <= result.metrics["train"]["epochs"] < 10.0


def test_multi_label_run(tmp_path: Path, tiny_config: dict[str, Any]) -> None:
    rows = [("great good movie", "pos|praise"), ("awful bad plot", "neg"),
            ("excellent acting", "pos"), ("terrible sad film", "neg|sad")] * 12
    files = {split: str(write_csv(tmp_path / f"{split}.jsonl.csv", rows)) for split in
             ("train", "dev", "test")}
    result = train(tiny_config, task={"multi_label": True},
                   data={**tiny_config["data"], **files})
    assert set(tunelab.load(result.run_dir).labels) == {"neg", "pos", "praise", "sad"}
    model = tunelab.load(result.run_dir)
    praised, sad = model.predict(["great good movie", "terrible sad film"])
    assert "pos" in praised["labels"] and "neg" not in praised["labels"]
    assert "neg" in sad["labels"] and "pos" not in sad["labels"]
    assert set(model.predict("awful bad plot")["probabilities"]) == {"neg", "pos", "praise",
                                                                     "sad"}
    assert result.metrics["test"]["f1_micro"] > 0.75, result.metrics["test"]
    rows = [json.loads(line) for line in
            (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    # "correct" compares label sets: the gold list is sorted, the prediction in label order
    assert all(row["correct"] == (set(row["labels"]) == set(row["gold"])) for row in rows)
    assert any(row["correct"] for row in rows)


def test_missing_dev_and_test_are_split_from_train(tiny_config: dict[str, Any]) -> None:
    data = {"train": tiny_config["data"]["train"], "max_length": 32}
    metrics = train(tiny_config, data=data).metrics
    sizes = metrics["sizes"]
    assert sizes["train"] + sizes["dev"] + sizes["test"] == 96
    assert sizes["test"] == round(96 * 0.1) and sizes["dev"] == round((96 - sizes["test"]) * 0.1)
    assert "stratified" in metrics["sources"]["dev"]


def test_kill_minus_nine_then_resume(tiny_config: dict[str, Any], tmp_path: Path) -> None:
    raw = {**tiny_config, "training": {**tiny_config["training"], "max_steps": 300,
                                       "eval_every": 10, "batch_size": 4,
                                       "early_stopping": {"enabled": False}},
           "evaluation": {"baselines": False}}
    config_path = tmp_path / "resume.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "tunelab.cli", "train", str(config_path)]
    checkpoints = Path(raw["output_dir"]) / ".tiny.partial" / "checkpoints"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(checkpoints.glob("checkpoint-*/trainer_state.json"))) >= 1:
            break
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (Path(raw["output_dir"]) / "tiny").exists()  # nothing half-built in place
    saved = sorted(int(p.parent.name.rsplit("-", 1)[1])
                   for p in checkpoints.glob("checkpoint-*/trainer_state.json"))

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((Path(raw["output_dir"]) / "tiny" / "metrics.json").read_text())
    assert metrics["train"]["resumed_from"] is not None
    assert "checkpoint-" in metrics["train"]["resumed_from"]
    assert metrics["train"]["steps"] == 300
    # a resume, not a restart: the resumed process logged no step at or before the newest
    # checkpoint the killed one left (each process writes its own TensorBoard file)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((Path(raw["output_dir"]) / "tiny" / "tensorboard").glob("events.*"),
                   key=lambda p: p.stat().st_mtime)
    newest = EventAccumulator(str(files[-1]))
    newest.Reload()
    steps = [event.step for tag in newest.Tags()["scalars"] for event in newest.Scalars(tag)]
    assert steps and min(steps) > saved[-1], (saved, min(steps))


def test_a_class_with_one_example_is_trained_on_and_said_to_be_unevaluated(
        tiny_config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [*sentiment_rows(60, seed=1), ("an okay one", "neutral")]
    data = {"train": str(write_csv(tmp_path / "rare.csv", rows)), "max_length": 32}
    with caplog.at_level("WARNING", logger="tunelab"):
        result = train(tiny_config, data=data)
    assert "neutral" in tunelab.load(result.run_dir).labels  # learned from
    assert "neutral" not in {row["gold"] for row in read_predictions(result.run_dir)}
    assert "1 label(s) have too few examples to hold any out: neutral" in caplog.text
    assert "kept out of it (a single example): neutral" in result.metrics["sources"]["dev"]


def test_a_short_run_logs_its_loss_throughout(tiny_config: dict[str, Any]) -> None:
    """By default the loss is logged every 5% of the steps, however few there are."""
    training = {k: v for k, v in tiny_config["training"].items() if k != "logging_steps"}
    result = train(tiny_config, training={**training, "epochs": 2,
                                          "early_stopping": {"enabled": False}})
    history = json.loads((result.run_dir / "log_history.json").read_text())
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert result.record.train.steps == 24  # 96 examples, batch 8, 2 epochs
    assert steps == list(range(2, 25, 2))


def test_only_a_run_that_used_its_plan_and_lost_to_the_probe_trains_on() -> None:
    from tunelab.methods.base import Trained, TrainingPlan
    from tunelab.training.extend import extension_plan, should_extend
    from tunelab.training.probe_start import Head, Probe

    plan = TrainingPlan(400, 32, 13, 130, 10.0, eval_steps=9)
    probe = Probe(Head(None, None), Head(None, None), dev=0.80)  # type: ignore[arg-type]
    below, above = Trained(None, 130, 10.0, 0.70), Trained(None, 130, 10.0, 0.85)
    assert should_extend(below, plan, probe, budget=1.0)
    assert not should_extend(above, plan, probe, budget=1.0)
    assert not should_extend(Trained(None, 90, 7.0, 0.70), plan, probe, 1.0)  # stopped early
    assert not should_extend(below, plan, probe, budget=0.0)
    assert not should_extend(below, plan, None, budget=1.0)
    more = extension_plan(plan, 0.5)
    assert more.total_steps == 65 and more.eval_steps == 9
