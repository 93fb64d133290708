"""Integrated Gradients on the token embeddings (captum's LayerIntegratedGradients), from
a baseline where every non-special token is padding; token scores are summed per word."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tunelab.explain.target import EntityTarget, Words, input_embeddings

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def torch_probs(task: Any, logits: torch.Tensor) -> torch.Tensor:
    """As target.class_probs, differentiably."""
    if getattr(task, "multi_label", False):
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)


def _attribute(model: Any, tokenizer: Any, encoded: Any, forward: Forward, n_steps: int
               ) -> tuple[np.ndarray, float]:
    from captum.attr import LayerIntegratedGradients

    device = next(model.parameters()).device
    ids = encoded["input_ids"].to(device)
    mask = encoded["attention_mask"].to(device)
    special = torch.tensor(tokenizer.get_special_tokens_mask(
        ids[0].tolist(), already_has_special_tokens=True), dtype=torch.bool, device=device)
    baseline = ids.clone()
    baseline[0, ~special] = tokenizer.pad_token_id
    model.eval()
    attributions, delta = LayerIntegratedGradients(forward, input_embeddings(model)).attribute(
        ids, baselines=baseline, additional_forward_args=(mask,), n_steps=n_steps,
        internal_batch_size=n_steps, return_convergence_delta=True)
    return attributions.sum(-1)[0].detach().float().cpu().numpy(), float(delta.abs().sum())


def _per_word(token_scores: np.ndarray, token_words: list[int | None], n_words: int
              ) -> np.ndarray:
    scores = np.zeros(n_words)
    for score, word in zip(token_scores, token_words, strict=True):
        if word is not None:
            scores[word] += score
    return scores


def text_scores(task: Any, model: Any, tokenizer: Any, words: Words, label: int | None,
                n_steps: int = 32) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities, each word's attribution for `label` (None: the predicted one), the
    completeness gap |sum of attributions - (f(text) - f(baseline))|)."""
    encoded = tokenizer(words.text, return_offsets_mapping=True, truncation=True,
                        max_length=task.max_length, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = torch_probs(task, model(**{k: v.to(device) for k, v in encoded.items()})
                            .logits)[0].float().cpu().numpy()
    chosen = int(probs.argmax()) if label is None else label

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch_probs(task, logits)[:, chosen]

    token_scores, delta = _attribute(model, tokenizer, encoded, forward, n_steps)
    token_words = [next((w for w, (s, e) in enumerate(words.spans) if s <= a < e), None)
                   if b > a else None for a, b in offsets]
    return probs, _per_word(token_scores, token_words, len(words.words)), delta


def entity_scores(task: Any, model: Any, tokenizer: Any, words: Words,
                  entities: list[EntityTarget], n_steps: int = 32
                  ) -> list[tuple[np.ndarray, float]]:
    encoded = tokenizer(words.words, is_split_into_words=True, truncation=True,
                        max_length=task.max_length, return_tensors="pt")
    token_words = encoded.word_ids(0)
    first = {w: t for t, w in reversed(list(enumerate(token_words))) if w is not None}
    out = []
    for entity in entities:
        spots = [(first[j], tag) for j, tag in zip(range(entity.first, entity.end),
                                                   entity.tag_ids, strict=True) if j in first]

        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    spots: list[tuple[int, int]] = spots) -> torch.Tensor:
            probs = torch.softmax(model(input_ids=input_ids,
                                        attention_mask=attention_mask).logits, dim=-1)
            return torch.stack([probs[:, t, tag] for t, tag in spots], dim=-1).mean(-1)

        token_scores, delta = _attribute(model, tokenizer, dict(encoded), forward, n_steps)
        out.append((_per_word(token_scores, token_words, len(words.words)), delta))
    return out
