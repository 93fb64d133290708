"""A head with a learning rate of its own (`training.head_lr`): at an encoder rate too small
to move anything, the head still moves, and the encoder does not."""

from typing import Any

import torch
from safetensors.torch import load_file

import tunelab
from tunelab.config import parse_config


def test_the_head_trains_at_its_own_rate(tiny_config: dict[str, Any]) -> None:
    weights = {}
    for head_lr in (None, 0.05):
        tiny_config |= {"name": f"head-lr-{head_lr}", "training": {
            **tiny_config["training"], "lr": 1e-7, "head_lr": head_lr, "head_init": "keep",
            "epochs": 2, "early_stopping": {"enabled": False}},
            "evaluation": {**tiny_config["evaluation"], "calibrate": False}}
        run = tunelab.train(parse_config(tiny_config), overwrite=True).run_dir
        weights[head_lr] = load_file(run / "model" / "model.safetensors")
    # the same seed, so the same start: what differs is what the head's own rate moved
    head = (weights[0.05]["classifier.weight"] - weights[None]["classifier.weight"]).abs()
    encoder = max((weights[0.05][k] - weights[None][k]).abs().max().item()
                  for k in weights[None] if k.startswith("bert.encoder"))
    assert head.max().item() > 1e-2
    assert encoder < 1e-4
    assert torch.isfinite(head).all()
