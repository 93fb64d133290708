"""Pruning and distillation: a student cut from a teacher run by importance, trained on the
teacher's distribution, saved as a plain transformers model with a smaller config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_export import trained
from transformers import AutoConfig, AutoModelForSequenceClassification

import tunelab
from tunelab.compress import prune
from tunelab.config import parse_config
from tunelab.errors import ConfigError
from tunelab.methods.distill import Distilled, DistillOptions


def test_student_is_cut_by_importance_and_loads_with_plain_transformers(
        tiny_config: dict[str, Any]) -> None:
    teacher = trained(tiny_config)
    student = trained(tiny_config, name="student", method={
        "name": "distill", "teacher": str(teacher), "layers": 1, "ffn_keep": 0.5})
    config = AutoConfig.from_pretrained(student / "model")
    assert (config.num_hidden_layers, config.intermediate_size) == (1, 32)
    model = AutoModelForSequenceClassification.from_pretrained(student / "model")
    assert model.bert.encoder.layer[0].intermediate.dense.weight.shape == (32, 32)
    texts = ["the movie was great", "awful plot"]
    assert [p["label"] for p in tunelab.load(student, "torch").predict(texts)] == \
        [p["label"] for p in tunelab.load(teacher, "torch").predict(texts)]
    report = tunelab.api.export(student)  # a student exports like any full run
    assert report["agreement"]["onnx fp32"] == 1.0


def test_neuron_pruning_removes_the_neurons_the_model_does_not_use(
        tiny_config: dict[str, Any]) -> None:
    """Half the feed-forward neurons are cut off from the output (their column of the
    output projection zeroed): they score zero, pruning half removes exactly them, and the
    pruned model computes the same loss."""
    teacher = tunelab.load(trained(tiny_config), "torch")
    model = teacher.model.eval()
    batch = dict(teacher.tokenizer(["the movie was great", "awful plot", "great fun"],
                                   padding=True, return_tensors="pt"))
    with torch.no_grad():  # the teacher's own decisions as labels
        batch["labels"] = model(**batch).logits.argmax(-1)
        for layer in prune.encoder_layers(model):
            layer.output.dense.weight[:, ::2] = 0.0  # even neurons reach nothing
        before = float(model(**batch).loss)
    scores = prune.neuron_importance(model, [batch])
    assert all(float(s[::2].abs().max()) == 0.0 and float(s[1::2].min()) > 0 for s in scores)
    kept_weights = [layer.intermediate.dense.weight[1::2].clone()
                    for layer in prune.encoder_layers(model)]
    assert prune.prune_neurons(model, 0.5, scores) == 32
    for layer, kept in zip(prune.encoder_layers(model), kept_weights, strict=True):
        assert torch.equal(layer.intermediate.dense.weight, kept)
    with torch.no_grad():
        assert float(model(**batch).loss) == pytest.approx(before, abs=1e-5)


def test_distillation_loss_follows_the_teacher() -> None:
    options = DistillOptions(teacher=Path("unused"), temperature=2.0, alpha=1.0)
    loss = Distilled.loss.__get__(type("S", (), {"options": options})())
    teacher = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    labels = torch.tensor([-100, -100])  # unlabelled texts: the teacher alone
    assert float(loss(teacher.clone(), teacher, labels, None)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(-teacher, teacher, labels, None)) > 0.1
    gold = DistillOptions(teacher=Path("unused"), alpha=0.0)
    hard = Distilled.loss.__get__(type("S", (), {"options": gold})())
    logits = torch.tensor([[3.0, -3.0]])
    assert float(hard(logits, -logits, torch.tensor([0]), None)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([0]))))


def test_unlabelled_texts_join_the_training_set(tiny_config: dict[str, Any], tmp_path: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    teacher = trained(tiny_config)
    texts = tmp_path / "unlabelled.txt"
    texts.write_text("".join(f"some new text number {i}\n" for i in range(40)) + "\n")
    config = {**tiny_config, "training": {**tiny_config["training"], "epochs": 1,
                                          "early_stopping": {"enabled": False}}}
    student = trained(config, name="student", method={
        "name": "distill", "teacher": str(teacher), "unlabelled": str(texts)})
    assert "40 unlabelled examples" in capfd.readouterr().err
    record = json.loads((student / "metrics.json").read_text())
    assert record["train"]["steps"] == (96 + 40) // 8  # one epoch over both, batch 8
    missing = parse_config({**tiny_config, "name": "nofile", "method": {
        "name": "distill", "teacher": str(teacher), "unlabelled": str(tmp_path / "no.txt")}})
    with pytest.raises(ConfigError, match=r"method.unlabelled: .*no.txt: file not found"):
        tunelab.train(missing, overwrite=True)


def test_teacher_with_other_labels_is_refused(tiny_config: dict[str, Any], tmp_path: Path
                                              ) -> None:
    teacher = trained(tiny_config)
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(30)))
    config = parse_config({**tiny_config, "name": "wrong", "data": {
        "train": str(other), "max_length": 32},
        "method": {"name": "distill", "teacher": str(teacher)}})
    with pytest.raises(ConfigError, match=r"method.teacher: .* labels .*this run's data"):
        tunelab.train(config, overwrite=True)
    assert not (Path(tiny_config["output_dir"]) / "wrong").exists()
    config = parse_config({**tiny_config, "name": "deep", "method": {
        "name": "distill", "teacher": str(teacher), "layers": 5}})
    with pytest.raises(ConfigError, match="more than the teacher's 2 layers"):
        tunelab.train(config, overwrite=True)
