"""Occlusion: remove each word in turn and see how much the explained probability falls.
All variants of a text go through the model as one batch, on any backend."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.explain.target import EntityTarget, Words, class_probs
from tunelab.inference import softmax


def text_scores(task: Any, model: Any, tokenizer: Any, words: Words, label: int | None,
                batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(the full text's probabilities, each word's probability drop for `label`, or for
    the predicted label when None)."""
    variants = [words.text] + [words.without(i) for i in range(len(words.words))]
    logits = task.logits(model, tokenizer, variants, None, batch_size)
    probs = class_probs(task, logits)
    chosen = int(probs[0].argmax()) if label is None else label
    return probs[0], probs[0, chosen] - probs[1:, chosen]


def entity_probability(probs: np.ndarray, entity: EntityTarget, removed: int | None) -> float:
    """Mean probability of the entity's tags at its words, in a sentence with word
    `removed` taken out (the words after it move up by one); 0 if none is left."""
    kept = [(j, tag) for j, tag in zip(range(entity.first, entity.end), entity.tag_ids,
                                        strict=True) if j != removed]
    if not kept:
        return 0.0
    return float(np.mean([probs[j - (removed is not None and j > removed), tag]
                          for j, tag in kept]))


def entity_scores(task: Any, model: Any, tokenizer: Any, words: Words,
                  entities: list[EntityTarget], batch_size: int = 64) -> list[np.ndarray]:
    sentences = [words.words] + [words.words[:i] + words.words[i + 1:]
                                 for i in range(len(words.words))]
    logits = task.word_logits(model, tokenizer, sentences, batch_size)
    probs = [softmax(x) for x in logits]
    return [np.array([entity_probability(probs[0], entity, None)
                      - entity_probability(probs[i + 1], entity, i)
                      for i in range(len(words.words))]) for entity in entities]
