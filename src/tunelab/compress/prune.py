"""Structured pruning of a fine-tuned BERT-style encoder, measured on training batches.

- Feed-forward neurons: importance is |activation x gradient| of each neuron's output
  (the first-order Taylor estimate of the loss change when it is removed, Molchanov et
  al. 2017), summed over the batches. Each layer keeps the same number of neurons, so the
  result is a plain config with a smaller `intermediate_size`.
- Whole layers: importance is the rise in loss when the layer is skipped, one at a time.
  The result has a smaller `num_hidden_layers`.

Attention heads are not pruned: a BERT config has one head count and one head size for
all layers, tied to `hidden_size`, so a model with fewer heads would no longer load with
plain transformers (transformers 5 also removed `prune_heads`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from tunelab.errors import ConfigError


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer layers (BERT, RoBERTa, XLM-R and relatives)."""
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or not all(
            hasattr(layer, "intermediate") and hasattr(layer, "output") for layer in layers):
        raise ConfigError(f"pruning and distillation need a BERT-style encoder "
                          f"(encoder.layer[i].intermediate); {type(model).__name__} has none")
    return layers


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def neuron_importance(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
                      ) -> list[torch.Tensor]:
    """Per layer, a score for each feed-forward neuron (higher: keep)."""
    layers = encoder_layers(model)
    scores = [torch.zeros(layer.intermediate.dense.out_features) for layer in layers]
    outputs: dict[int, torch.Tensor] = {}

    def keep_output(index: int) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            output.retain_grad()
            outputs[index] = output
        return hook

    handles = [layer.intermediate.register_forward_hook(keep_output(i))
               for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            _loss(model, batch).backward()
            for i, output in outputs.items():
                assert output.grad is not None
                scores[i] += (output * output.grad).abs().sum(dim=tuple(
                    range(output.dim() - 1))).detach()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def prune_neurons(model: nn.Module, keep: float, scores: list[torch.Tensor]) -> int:
    """Keep the `keep` fraction of each layer's feed-forward neurons, the highest scored.
    Returns the new intermediate size."""
    layers = encoder_layers(model)
    size = max(1, round(keep * layers[0].intermediate.dense.out_features))
    for layer, score in zip(layers, scores, strict=True):
        index = torch.sort(torch.topk(score, size).indices).values
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
    model.config.intermediate_size = size
    return size


def layer_importance(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """Per layer, how much the loss rises when that layer alone is skipped."""
    layers = encoder_layers(model)
    model.eval()
    with torch.no_grad():
        base = sum(float(_loss(model, b)) for b in batches)
        rises = []
        for skipped in range(len(layers)):
            _set_layers(model, [layer for i, layer in enumerate(layers) if i != skipped])
            rises.append(sum(float(_loss(model, b)) for b in batches) - base)
        _set_layers(model, list(layers))
    return rises


def keep_layers(model: nn.Module, count: int, rises: list[float]) -> list[int]:
    """Keep the `count` layers whose skipping costs most, in their order. Returns them."""
    kept = sorted(sorted(range(len(rises)), key=lambda i: rises[i], reverse=True)[:count])
    layers = encoder_layers(model)
    _set_layers(model, [layers[i] for i in kept])
    return kept


def _set_layers(model: nn.Module, layers: list[nn.Module]) -> None:
    encoder = model.base_model.encoder
    encoder.layer = nn.ModuleList(layers)
    model.config.num_hidden_layers = len(layers)
