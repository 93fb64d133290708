"""Every tuning method on both classification tasks: it trains, saves, reloads to the same
predictions, exports where it can (and says so where it cannot), and refuses options that
do not fit the model before any run directory exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from test_token_classification import conll_file

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ExportError
from tunelab.methods.adalora import AdaLoRA
from tunelab.methods.base import TrainingPlan
from tunelab.predictor import Predictor
from tunelab.training.plan import training_plan
from tunelab.training.trainer import training_arguments

PEFT = ["adalora", "ia3", "prefix", "prompt", "p-tuning", "adapter", "lora"]
NER = ["adalora", "ia3", "prefix", "adapter"]  # prompt and p-tuning refuse NER (see below)


def run_with(config: dict[str, Any], method: str | dict[str, Any], **changes: Any) -> Path:
    name = method if isinstance(method, str) else method["name"]
    raw = {**config, "name": f"m-{name}", "method": method, **changes}
    raw["training"] = {**config["training"], "epochs": 3}
    raw["evaluation"] = {"baselines": False}
    return tunelab.train(parse_config(raw), overwrite=True).run_dir


def reloaded_agree(run: Path) -> None:
    """The reloaded model gives the predictions the trained one gave on the test split."""
    saved = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    model = Predictor(run, "torch")
    if "label" in saved[0]:
        again = model.predict([row["text"] for row in saved])
        for row, new in zip(saved, again, strict=True):
            assert new["label"] == row["label"]
            assert new["probabilities"] == pytest.approx(row["probabilities"], abs=1e-4)
    else:
        again = model.predict([row["text"].split(" ") for row in saved])
        for row, new in zip(saved, again, strict=True):
            assert [f"{e['type']}: {e['text']}" for e in new["entities"]] == row["predicted"]


@pytest.mark.parametrize("method", PEFT)
def test_each_method_trains_a_classifier_that_reloads_the_same(
        tiny_config: dict[str, Any], method: str) -> None:
    run = run_with(tiny_config, method)
    record = json.loads((run / "metrics.json").read_text())
    assert record["method"] == method
    assert 0 < record["train"]["trainable_parameters"] < record["train"]["total_parameters"]
    reloaded_agree(run)


@pytest.mark.parametrize("method", NER)
def test_each_method_trains_a_tagger_that_reloads_the_same(
        tiny_config: dict[str, Any], tmp_path: Path, method: str) -> None:
    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    run = run_with(tiny_config, method, task={"type": "token-classification"},
                   data={**files, "max_length": 16})
    reloaded_agree(run)


@pytest.mark.parametrize("restored", [True, False])
def test_p_tuning_keeps_the_virtual_tokens_of_its_best_checkpoint(
        tiny_model_dir: Path, tmp_path: Path, restored: bool) -> None:
    """peft saves P-tuning's virtual tokens as its encoder's output, and restoring a
    checkpoint writes them into the encoder's input, which would transform them a second
    time (peft#2256). When training ends the run keeps the tokens it had at its best."""
    import torch
    from peft import PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, TrainerState
    from transformers import TrainingArguments as Arguments

    from tunelab.methods.prompt_learning import FoldPromptEncoder

    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model = get_peft_model(base, PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=4,
                                                     encoder_hidden_size=16))
    with torch.no_grad():  # as if trained
        for parameter in model.prompt_encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    best = model.get_prompt(1).clone()
    state = TrainerState()
    if restored:  # what the Trainer does with load_best_model_at_end
        model.save_pretrained(tmp_path / "checkpoint")
        model.load_adapter(str(tmp_path / "checkpoint"), adapter_name="default",
                           is_trainable=True)
        assert not torch.allclose(model.get_prompt(1), best, atol=1e-4), "peft fixed it?"
        state.best_model_checkpoint = str(tmp_path / "checkpoint")
    args = Arguments(output_dir=str(tmp_path), load_best_model_at_end=restored,
                     eval_strategy="steps" if restored else "no", save_strategy="steps")
    FoldPromptEncoder(model).on_train_end(args, state, None)
    assert torch.allclose(model.get_prompt(1), best, atol=1e-5)


def test_adalora_shrinks_its_ranks_by_the_plan_and_saves_the_final_budget(
        tiny_config: dict[str, Any]) -> None:
    run = run_with(tiny_config, {"name": "adalora", "init_r": 8, "target_r": 2, "tinit": 4,
                                 "tfinal": 8, "deltaT": 2})
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    steps = json.loads((run / "metrics.json").read_text())["train"]["steps"]
    assert config["total_step"] == 3 * 12  # 96 examples, batch 8, 3 epochs: the plan
    kept = [sum(pattern) for pattern in config["rank_pattern"].values()]
    assert steps > 0 and kept and sum(kept) < 8 * len(kept), "the budget was cut"
    reloaded_agree(run)


def test_gradient_checkpointing_trades_time_not_results(tiny_config: dict[str, Any]) -> None:
    """Recomputed activations give the same gradients (dropout's random state is replayed),
    so the trained model predicts the same; and the Trainer is told to recompute."""
    plain = run_with(tiny_config, "lora")
    config = {**tiny_config, "training": {**tiny_config["training"],
                                          "gradient_checkpointing": True}}
    for wanted in (False, True):
        raw = config if wanted else tiny_config
        parsed = parse_config(raw)
        arguments = training_arguments(parsed, training_plan(parsed, 96), Path("unused"),
                                       "accuracy", 1e-3)
        assert arguments.activation_checkpointing is wanted
    checkpointed = run_with(config, "lora", name="m-lora-checkpointed")
    saved = yaml.safe_load((checkpointed / "config.yaml").read_text())
    assert saved["training"]["gradient_checkpointing"] is True
    first, second = ([p for line in (run / "predictions.jsonl").read_text().splitlines()
                      for p in json.loads(line)["probabilities"].values()]
                     for run in (plain, checkpointed))
    assert second == pytest.approx(first, abs=1e-4)


def test_adalora_schedule_follows_the_plan_unless_set() -> None:
    plan = TrainingPlan(train_examples=3200, batch_size=32, steps_per_epoch=100,
                        total_steps=300, epochs=3.0)
    defaults = AdaLoRA(AdaLoRA.Options()).plan_values(plan)
    assert defaults == {"total_step": 300, "tinit": 30, "tfinal": 90}
    assert AdaLoRA(AdaLoRA.Options(tinit=5, tfinal=0)).plan_values(plan) == {"total_step": 300}


@pytest.mark.parametrize("method", ["ia3", "adapter"])
def test_merged_and_adapter_runs_export_to_onnx_that_agrees(
        tiny_config: dict[str, Any], method: str) -> None:
    run = run_with(tiny_config, method)
    report = tunelab.api.export(run, quantize=False)
    assert report["agreement"]["onnx fp32"] == 1.0
    assert Predictor(run).backend == "model.onnx"


def test_a_virtual_token_run_is_not_exported_and_is_served_with_torch(
        tiny_config: dict[str, Any]) -> None:
    run = run_with(tiny_config, "prefix")
    with pytest.raises(ExportError, match=r"method 'prefix'.*served with the torch backend"):
        tunelab.api.export(run)
    assert not (run / "export").exists()
    assert Predictor(run).backend == "torch"  # what `tunelab serve RUN` loads


@pytest.mark.parametrize(("method", "match"), [
    ({"name": "prompt", "num_virtual_tokens": 500},
     r"method\.num_virtual_tokens: 500 virtual tokens.*at most 96"),
    ({"name": "adalora", "init_r": 0}, r"method\.init_r: Input should be greater than"),
    ({"name": "adalora", "init_r": 4, "target_r": 8}, r"target_r \(8\) must not exceed"),
    ({"name": "adalora", "tinit": 60, "tfinal": 60}, r"method: .*tinit"),  # 96 steps
    ({"name": "ia3", "target_modules": ["nope"]}, r"method\.target_modules: no module named"),
    ({"name": "adapter", "kind": "both"}, r"method\.kind: Input should be 'pfeiffer' or"),
    ({"name": "prompt"}, r"method\.name: prompt prepends virtual tokens"),
])
def test_options_that_do_not_fit_are_one_line_errors_before_any_run_exists(
        tiny_config: dict[str, Any], tmp_path: Path, method: dict[str, Any], match: str) -> None:
    raw = {**tiny_config, "name": "refused", "method": method,
           "data": {**tiny_config["data"], "max_length": 32}}
    if method == {"name": "prompt"}:
        files = {s: str(conll_file(tmp_path / f"{s}.txt", 4)) for s in ("train", "dev", "test")}
        raw.update(task={"type": "token-classification"}, data=files)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-1500:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert re.search(match, done.stderr), done.stderr
    runs = Path(raw["output_dir"])
    assert not (runs / "refused").exists() and not list(runs.glob(".refused.partial*"))
