"""The learning-rate range test (`training.lr: find`): it raises the rate step by step over
the run's own data, picks a rate inside the range it tried, puts the weights back, and a run
trains at the rate it picked."""

import json
from pathlib import Path
from typing import Any

import torch
from conftest import tiny_sentiment_setup

import tunelab
from tunelab.config import parse_config
from tunelab.data.token_cache import cached_encode
from tunelab.training.lr_range import SPAN, range_test
from tunelab.training.plan import training_plan


def test_the_range_test_picks_a_rate_it_tried_and_puts_the_weights_back(
        tiny_model_dir: Path) -> None:
    data, task, tokenizer, model = tiny_sentiment_setup(tiny_model_dir, 64, seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = parse_config({"task": "text-classification", "data": {"train": "unused.csv"},
                           "training": {"batch_size": 8}, "seed": 3}, source="test")
    train_set, _ = cached_encode(task, data, tokenizer, False)
    found = range_test(config, training_plan(config, 64), model, train_set,
                       task.collator(tokenizer), tokenizer, 1e-3, "accuracy", steps=30)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert found.lrs[0] == 1e-3 / SPAN and found.lrs == sorted(found.lrs)
    assert found.lrs[0] / 10 <= found.picked <= found.lrs[-1] / 10
    lowest = found.lrs[found.losses.index(min(found.losses))]
    assert found.picked == lowest / 10
    # the loss at the lowest point is below where it started: the model learnt something
    assert min(found.losses) < found.losses[0]


def test_a_run_with_lr_find_trains_at_the_rate_it_picked(tiny_config: dict[str, Any]) -> None:
    tiny_config["training"] |= {"lr": "find", "epochs": 2}
    result = tunelab.train(parse_config(tiny_config), overwrite=True)
    record = json.loads((result.run_dir / "metrics.json").read_text())
    assert record["lr"] == record["lr_range_test"]["picked"]
    assert record["lr_range_test"]["steps"] > 5
    assert (result.run_dir / "lr_range.png").stat().st_size > 10_000
    history = json.loads((result.run_dir / "log_history.json").read_text())
    peak = max(entry["learning_rate"] for entry in history if "learning_rate" in entry)
    assert 0.8 * record["lr"] <= peak <= record["lr"] * 1.0001  # warm-up ends near it
