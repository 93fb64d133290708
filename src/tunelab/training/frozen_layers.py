"""Freeze the embeddings and the lower k encoder layers, and compute their outputs once.

Frozen layers give the same output for an example in every epoch, so tunelab runs them
once over the train and dev sets and stores the hidden states. While training, the model
sees those states as `inputs_embeds`, with the embeddings replaced by a pass-through and
the lower layers by skips: every epoch then pays only for the top layers and the head.
Layer indices are kept, so LoRA adapters on the top layers save under their real names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from tqdm.auto import tqdm

from tunelab.console import bars_shown
from tunelab.errors import ConfigError

NOT_MODEL_INPUTS = ("length", "cache_index")


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings: the cached states already are the layer-k output."""

    def forward(self, input_ids: Any = None, token_type_ids: Any = None, position_ids: Any = None,
                inputs_embeds: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        if inputs_embeds is None:
            raise RuntimeError("frozen-layer cache: the batch has no cached states")
        return inputs_embeds


class SkippedLayer(nn.Module):
    def forward(self, hidden_states: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return hidden_states


def encoder_parts(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.ModuleList]:
    """(base model, its embeddings, its layer list) for BERT-style encoders."""
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if embeddings is None or not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"training.freeze_layers: {type(model).__name__} has no embeddings + encoder.layer "
            "stack (BERT-style) to freeze; set training.freeze_layers=0 for this model")
    return base, embeddings, layers


class FrozenLowerLayers:
    def __init__(self, model: nn.Module, k: int) -> None:
        self.base, self.embeddings, self.layers = encoder_parts(model)
        if not 1 <= k <= len(self.layers):
            raise ConfigError(
                f"training.freeze_layers: {k} is out of range; this model has "
                f"{len(self.layers)} layers, so use 0 to {len(self.layers)}")
        self.k = k
        for module in (self.embeddings, *self.layers[:k]):
            module.requires_grad_(False)
        self.states: torch.Tensor | None = None
        self.offsets: list[int] = [0]

    # --- the cache ----------------------------------------------------------
    @torch.no_grad()
    def _lower_outputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        full = self.base.encoder.layer
        self.base.encoder.layer = nn.ModuleList(self.layers[: self.k])
        try:
            return self.base(**batch).last_hidden_state
        finally:
            self.base.encoder.layer = full

    def attach(self, dataset: Dataset, batch_size: int = 64, desc: str = "caching") -> Dataset:
        """Compute the layer-k states of every example, and add a `cache_index` column."""
        inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
                  if name in dataset.column_names]
        columns = {name: dataset[name] for name in inputs}
        lengths = [len(ids) for ids in columns["input_ids"]]
        order = sorted(range(len(dataset)), key=lengths.__getitem__)
        pieces: dict[int, torch.Tensor] = {}
        was_training = self.base.training
        self.base.eval()
        try:
            for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch",
                              disable=not bars_shown()):
                rows = order[start:start + batch_size]
                width = max(lengths[i] for i in rows)
                batch = {name: torch.zeros(len(rows), width, dtype=torch.long) for name in inputs}
                for r, i in enumerate(rows):
                    for name in inputs:
                        batch[name][r, : lengths[i]] = torch.as_tensor(columns[name][i])
                hidden = self._lower_outputs(batch)
                for r, i in enumerate(rows):
                    pieces[i] = hidden[r, : lengths[i]].clone()
        finally:
            self.base.train(was_training)
        first = len(self.offsets) - 1
        new = torch.cat([pieces[i] for i in range(len(dataset))])
        self.states = new if self.states is None else torch.cat([self.states, new])
        for length in lengths:
            self.offsets.append(self.offsets[-1] + length)
        return dataset.add_column("cache_index", list(range(first, first + len(dataset))))

    def state(self, index: int) -> torch.Tensor:
        assert self.states is not None
        return self.states[self.offsets[index]: self.offsets[index + 1]]

    def collator(self, inner: Any) -> CachedStatesCollator:
        return CachedStatesCollator(inner, self)

    # --- training on the top layers -----------------------------------------
    @contextlib.contextmanager
    def top_layers_only(self) -> Iterator[None]:
        """Inside: the model reads cached states. On exit the original stack is back, with
        the top layers as trained."""
        full = self.base.encoder.layer
        self.base.embeddings = PassThroughEmbeddings()
        self.base.encoder.layer = nn.ModuleList(
            [SkippedLayer() for _ in range(self.k)] + list(full[self.k:]))
        try:
            yield
        finally:
            self.base.embeddings = self.embeddings
            self.base.encoder.layer = full


class CachedStatesCollator:
    """Wraps a task collator: pads labels and masks as before, and swaps the token ids for
    the cached layer-k states."""

    def __init__(self, inner: Any, frozen: FrozenLowerLayers) -> None:
        self.inner = inner
        self.frozen = frozen

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        indices = [feature["cache_index"] for feature in features]
        batch = self.inner([{k: v for k, v in f.items() if k not in NOT_MODEL_INPUTS}
                            for f in features])
        mask = batch["attention_mask"]
        assert self.frozen.states is not None
        embeds = torch.zeros(*mask.shape, self.frozen.states.shape[-1],
                             dtype=self.frozen.states.dtype)
        for row, index in enumerate(indices):
            embeds[row, mask[row].bool()] = self.frozen.state(index)  # either padding side
        batch.pop("input_ids")
        batch.pop("token_type_ids", None)
        batch["inputs_embeds"] = embeds
        return batch
