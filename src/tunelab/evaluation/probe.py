"""The 'before fine-tuning' baseline: frozen encoder features and a fitted linear head."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from tunelab.inference import batched_outputs


def sentence_embeddings(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        encoded: dict[str, list[Any]], batch_size: int = 64) -> np.ndarray:
    """Mean-pooled last hidden states of a frozen encoder, one row per text."""
    rows = [dict(zip(encoded.keys(), values, strict=True))
            for values in zip(*encoded.values(), strict=True)]

    def mean_pool(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    encoder.eval()
    return np.stack(batched_outputs(mean_pool, DataCollatorWithPadding(tokenizer), rows,
                                    batch_size))


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray,
                     multi_label: bool, seed: int) -> np.ndarray:
    """Predicted ids (or multi-hot rows) from a logistic-regression head on frozen features."""
    head = LogisticRegression(max_iter=2000, random_state=seed)
    if multi_label:
        keep = train_y.sum(axis=0) > 0  # labels absent from the sample cannot be fitted
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(head))
        out = np.zeros((len(eval_x), train_y.shape[1]), dtype=np.float32)
        out[:, keep] = model.fit(train_x, train_y[:, keep]).predict(eval_x)
        return out
    if len(np.unique(train_y)) < 2:
        return np.full(len(eval_x), train_y[0])
    return make_pipeline(StandardScaler(), head).fit(train_x, train_y).predict(eval_x)
