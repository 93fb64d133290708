"""Behaviour of the speed levers: the tokenisation cache, frozen-layer caching and
length-grouped batching. Timings are measured in bench/speed, not here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import sentiment_rows
from transformers import AutoTokenizer

import tunelab
from tunelab.config import parse_config
from tunelab.data.token_cache import cached_encode
from tunelab.models import resolve_model
from tunelab.predictor import Predictor
from tunelab.tasks.text_classification import TextClassification, TextExamples
from tunelab.training.frozen_layers import FrozenLowerLayers
from tunelab.training.plan import training_plan
from tunelab.training.trainer import build_trainer


def examples(n: int = 40, seed: int = 0) -> TextExamples:
    rows = sentiment_rows(n, seed)
    return TextExamples("mem", list(range(n)), [t for t, _ in rows], None, [lab for _, lab in rows])


def task_for(data: TextExamples, max_length: int = 32) -> TextClassification:
    return TextClassification(TextClassification.label_set(data, TextClassification.Options()),
                              max_length=max_length)


def test_token_cache_hits_and_is_invalidated_by_data_and_tokenizer(tiny_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = examples()
    task = task_for(data)
    first, hit = cached_encode(task, data, tokenizer)
    assert not hit
    again, hit = cached_encode(task, data, tokenizer)
    assert hit
    assert again.to_dict() == first.to_dict()

    changed = examples()
    changed.texts[3] = changed.texts[3] + " very"
    _, hit = cached_encode(task, changed, tokenizer)
    assert not hit, "a changed text must not reuse the cached encoding"

    tokenizer.add_tokens(["moviegoer"])
    tokenizer.save_pretrained(tmp_path / "tok")
    other = AutoTokenizer.from_pretrained(tmp_path / "tok")
    _, hit = cached_encode(task, data, other)
    assert not hit, "a changed tokenizer must not reuse the cached encoding"

    _, hit = cached_encode(task_for(data, max_length=16), data, tokenizer)
    assert not hit, "a changed max_length must not reuse the cached encoding"
    _, hit = cached_encode(task, data, tokenizer, enabled=False)
    assert not hit


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("k", [1, 2])
def test_cached_frozen_layers_give_the_uncached_logits(tiny_model_dir: Path, k: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = examples(24)
    task = task_for(data)
    torch.manual_seed(0)
    model = task.build_model(resolve_model(str(tiny_model_dir))).eval()
    dataset = task.encode(data, tokenizer)
    plain = task.collator(tokenizer)([dict(row) for row in dataset.remove_columns("length")])
    expected = _logits(model, plain)

    frozen = FrozenLowerLayers(model, k)
    cached_set = frozen.attach(dataset, batch_size=5)
    batch = frozen.collator(task.collator(tokenizer))([dict(row) for row in cached_set])
    assert "input_ids" not in batch and batch["inputs_embeds"].shape[:2] == plain["input_ids"].shape
    with frozen.top_layers_only():
        got = _logits(model, batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # on exit the full stack is back and reads token ids again
    torch.testing.assert_close(_logits(model, plain), expected)


# With frozen random embeddings the tiny model needs more steps to find the cue words.
SLOW_LEARNER = {"freeze_layers": 1, "epochs": 20, "lr": 5e-3, "early_stopping": {"patience": 20}}


def test_frozen_layer_run_trains_only_the_top(tiny_config: dict[str, Any],
                                              tiny_model_dir: Path) -> None:
    tiny_config["training"] |= SLOW_LEARNER
    result = tunelab.train(parse_config(tiny_config))
    assert result.metrics["test"]["accuracy"] >= 0.8
    trained = Predictor(result.run_dir).model
    task = task_for(examples())
    original = task.build_model(resolve_model(str(tiny_model_dir)))
    old, new = original.state_dict(), trained.state_dict()
    for name in ("bert.embeddings.word_embeddings.weight",
                 "bert.encoder.layer.0.attention.self.query.weight"):
        torch.testing.assert_close(new[name], old[name], msg=f"{name} is frozen")
    assert not torch.allclose(new["bert.encoder.layer.1.attention.self.query.weight"],
                              old["bert.encoder.layer.1.attention.self.query.weight"])
    # the reassembled model scores the test set as the run reported
    again = Predictor(result.run_dir).evaluate(Path(tiny_config["data"]["test"])).metrics
    assert again["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])


def test_frozen_layers_combine_with_lora(tiny_config: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    tiny_config["training"] |= SLOW_LEARNER | {"lr": 1e-2, "epochs": 4}
    tiny_config["method"] = {"name": "lora", "r": 4, "target_modules": "all-linear"}
    result = tunelab.train(parse_config(tiny_config))
    keys = list(load_file(result.run_dir / "model/adapter_model.safetensors"))
    assert any("layer.1." in key and "lora_A" in key for key in keys), keys
    assert not any("layer.0." in key for key in keys), "frozen layers get no adapters"
    # the reassembled model (frozen base layers + trained top adapters) scores as reported
    again = Predictor(result.run_dir).evaluate(Path(tiny_config["data"]["test"])).metrics
    assert again["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    assert again["f1_macro"] == pytest.approx(result.metrics["test"]["f1_macro"])


def test_freeze_layers_out_of_range_is_a_config_error(tiny_config: dict[str, Any]) -> None:
    tiny_config["training"] |= {"freeze_layers": 5}
    with pytest.raises(tunelab.errors.ConfigError, match="freeze_layers: 5 is out of range"):
        tunelab.train(parse_config(tiny_config))


def test_length_grouping_visits_every_example_once_per_epoch(tiny_model_dir: Path,
                                                             tiny_config: dict[str, Any],
                                                             tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = sentiment_rows(200, 5)
    texts = [" ".join([t] * (1 + i % 6)) for i, (t, _) in enumerate(rows)]  # varied lengths
    data = TextExamples("mem", list(range(200)), texts, None, [lab for _, lab in rows])
    task = task_for(data, max_length=128)
    dataset = task.encode(data, tokenizer)
    config = parse_config(tiny_config)
    model = task.build_model(resolve_model(str(tiny_model_dir)))
    trainer = build_trainer(config, training_plan(config, len(dataset)), task, model, tokenizer,
                            dataset, dataset, tmp_path, 1e-3, "accuracy")
    sampler = trainer._get_train_sampler()
    epochs = [list(sampler) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(len(dataset)))
    assert epochs[0] != epochs[1], "batches must be reshuffled between epochs"

    lengths = dataset["length"]
    size = config.training.batch_size

    def padding(order: list[int]) -> int:
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        return sum(max(lengths[j] for j in b) * len(b) - sum(lengths[j] for j in b)
                   for b in batches)

    shuffled = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    assert padding(epochs[0]) < padding(shuffled) / 2


def test_frozen_layer_cache_works_for_ner(tiny_config: dict[str, Any], tmp_path: Path) -> None:
    from test_token_classification import conll_file

    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    raw = {**tiny_config, "task": {"type": "token-classification"},
           "data": {**files, "max_length": 16}}
    raw["training"] = {**raw["training"], "freeze_layers": 1, "epochs": 3}
    result = tunelab.train(parse_config(raw))
    assert result.metrics["train"]["frozen_layers"] == 1
    again = Predictor(result.run_dir).evaluate(Path(files["test"])).metrics
    assert again["f1"] == pytest.approx(result.metrics["test"]["f1"])
    assert again["token_accuracy"] == pytest.approx(result.metrics["test"]["token_accuracy"])


def test_micro_batches_make_the_same_update_as_the_whole_batch(
        tiny_model_dir: Path, tiny_config: dict[str, Any], tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = examples(64, 3)
    task = task_for(data)
    dataset = task.encode(data, tokenizer)
    runs = []
    for micro in (None, 4):
        raw = {**tiny_config, "training": {**tiny_config["training"], "batch_size": 16,
                                           "micro_batch_size": micro, "max_steps": 3,
                                           "group_by_length": False, "warmup_ratio": 0.0,
                                           "logging_steps": 1}}
        config = parse_config(raw)
        plan = training_plan(config, len(dataset))
        assert plan.batch_size == 16 and plan.micro_batch == (micro or 16)
        torch.manual_seed(0)
        model = task.build_model(resolve_model(str(tiny_model_dir)), dropout=0.0)
        trainer = build_trainer(config, plan, task, model, tokenizer, dataset, dataset,
                                tmp_path / str(micro), 1e-2, "accuracy", keep_best=False)
        assert trainer.args.per_device_train_batch_size * \
            trainer.args.gradient_accumulation_steps == 16
        start = model.classifier.weight.detach().clone()
        trainer.train()
        runs.append(([log["loss"] for log in trainer.state.log_history if "loss" in log],
                     model.classifier.weight.detach().clone()))
    (whole_losses, whole_head), (micro_losses, micro_head) = runs
    assert len(whole_losses) == 3 and micro_losses == pytest.approx(whole_losses, rel=1e-4)
    # the head's gradients are far from zero, so Adam's steps on it match closely (on weights
    # with near-zero gradients float noise can flip the sign of Adam's step)
    assert torch.allclose(whole_head, micro_head, atol=1e-5)
    assert not torch.allclose(start, micro_head, atol=1e-3)  # and it did move


def test_parameter_efficient_methods_take_micro_batches_and_full_fine_tuning_does_not(
        tiny_config: dict[str, Any]) -> None:
    from tunelab import registry

    raw = {**tiny_config, "training": {**tiny_config["training"], "batch_size": 32}}
    config = parse_config(raw)
    for method, micro in (("full", 32), ("lora", 8), ("ia3", 8), ("adapter", 8)):
        plan = training_plan(config, 200, registry.methods.get(method).micro_batch_size)
        assert plan.batch_size == 32 and plan.micro_batch == micro, method
    raw["training"]["batch_size"] = 20  # 8 does not divide it: the largest divisor below
    assert training_plan(parse_config(raw), 200, 8).micro_batch == 5
