"""Batched forward passes over encoded features, longest first so that padding stays small."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tunelab.console import bars_shown


def batched_outputs(run: Callable[[dict[str, torch.Tensor]], torch.Tensor], collator: Any,
                    features: Sequence[dict[str, Any]], batch_size: int = 64,
                    progress: bool = False) -> list[np.ndarray]:
    """`run` over padded batches of `features`; one array per feature, in input order.
    Per-token outputs are trimmed to the feature's own length."""
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    model_keys = ("input_ids", "attention_mask", "token_type_ids")
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="predict",
                          disable=not (progress and bars_shown()), leave=False):
            chunk = order[start:start + batch_size]
            batch = collator([{k: features[i][k] for k in model_keys if k in features[i]}
                              for i in chunk])
            values = run(batch).float().cpu().numpy()
            for row, i in enumerate(chunk):
                value = values[row]
                out[i] = value[: len(features[i]["input_ids"])] if value.ndim == 2 else value
    return out


def as_features(encoded: Any) -> list[dict[str, Any]]:
    """A tokenizer's batch output (one list per key) as one dict per text, as
    `batched_outputs` takes them."""
    return [dict(zip(encoded.keys(), values, strict=True))
            for values in zip(*encoded.values(), strict=True)]


def on_device(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    device = getattr(model, "device", None) or next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}
