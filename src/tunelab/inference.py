"""Batched forward passes over encoded features, longest first so that padding stays small.

The same code serves a PyTorch model and an exported one (`takes_numpy`): for the latter,
batches are padded into numpy arrays and torch is never imported, so a served ONNX model
runs without it."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tunelab.console import bars_shown


def takes_numpy(model: Any) -> bool:
    return bool(getattr(model, "takes_numpy", False))


def for_model(collator: Any, model: Any) -> Any:
    """The task's collator, padding into numpy arrays for an exported model."""
    if takes_numpy(model) and dataclasses.is_dataclass(collator):
        return dataclasses.replace(collator, return_tensors="np")
    return collator


def as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def softmax(logits: Any) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: Any, dtype: Any = np.float32) -> np.ndarray:
    x = np.asarray(logits, dtype=dtype)
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + e^-x) without overflow


def no_grad() -> Any:
    torch = sys.modules.get("torch")  # loaded by a PyTorch model, never here
    return torch.inference_mode() if torch is not None else nullcontext()


def batched_outputs(run: Callable[[dict[str, Any]], Any], collator: Any,
                    features: Sequence[dict[str, Any]], batch_size: int = 64,
                    progress: bool = False) -> list[np.ndarray]:
    """`run` over padded batches of `features`; one array per feature, in input order.
    Per-token outputs are trimmed to the feature's own length."""
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    model_keys = ("input_ids", "attention_mask", "token_type_ids")
    with no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="predict",
                          disable=not (progress and bars_shown()), leave=False):
            chunk = order[start:start + batch_size]
            batch = collator([{k: features[i][k] for k in model_keys if k in features[i]}
                              for i in chunk])
            values = as_array(run(batch))
            for row, i in enumerate(chunk):
                value = values[row]
                out[i] = value[: len(features[i]["input_ids"])] if value.ndim == 2 else value
    return out


def as_features(encoded: Any) -> list[dict[str, Any]]:
    """A tokenizer's batch output (one list per key) as one dict per text, as
    `batched_outputs` takes them."""
    return [dict(zip(encoded.keys(), values, strict=True))
            for values in zip(*encoded.values(), strict=True)]


def on_device(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    if takes_numpy(model):
        return batch
    device = getattr(model, "device", None) or next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}
