"""What to label next: the unlabelled texts a classifier is least sure about, spread over
the input space so that one batch of labelling does not spend itself on near-duplicates.

Uncertainty is the margin between the two most probable labels (Scheffer et al., 2001):
small when the model hesitates between two labels. From the CANDIDATES x n least sure texts,
n are chosen by farthest-first traversal (the greedy k-center of Sener and Savarese, 2018)
over the model's own head features, starting from the least sure text: each next pick is
the candidate farthest (cosine) from everything picked so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import TunelabError

CANDIDATES = 4  # the uncertain pool diversity chooses from, in multiples of n


def suggest(run: Path, texts: list[str], n: int) -> list[dict[str, Any]]:
    """Up to `n` of `texts`, in the order picked: text, the model's guess and its margin."""
    from tunelab.predictor import Predictor
    from tunelab.tasks.head_growth import head_inputs

    predictor = Predictor(run, "torch")
    task = predictor.task
    if task.name != "text-classification" or getattr(task, "multi_label", False):
        raise TunelabError(f"{run}: suggest ranks single-label text classification runs; this "
                           f"run is {task.name}")
    texts = list(dict.fromkeys(texts))  # a repeated text is one labelling job
    logits = task.logits(predictor.model, predictor.tokenizer, texts, progress=True)
    with head_inputs(predictor.model, len(task.labels)):
        features = task.logits(predictor.model, predictor.tokenizer, texts, progress=True)
    probs, _ = task.decide(logits)
    top = np.sort(probs, axis=-1)[:, ::-1]
    margins = top[:, 0] - top[:, 1]
    picked = farthest_first(features, margins, n)
    return [{"text": texts[i], "suggested": task.labels[int(probs[i].argmax())],
             "margin": round(float(margins[i]), 4)} for i in picked]


def farthest_first(features: np.ndarray, margins: np.ndarray, n: int) -> list[int]:
    """Indices of up to n of the CANDIDATES x n smallest margins, farthest-first."""
    pool = np.argsort(margins, kind="stable")[:CANDIDATES * n]
    unit = features[pool] / np.maximum(np.linalg.norm(features[pool], axis=1, keepdims=True),
                                       1e-12)
    chosen = [0]  # the least sure text starts
    nearest = 1.0 - unit @ unit[0]
    while len(chosen) < min(n, len(pool)):
        nearest[chosen] = -np.inf
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = np.minimum(nearest, 1.0 - unit @ unit[pick])
    return [int(pool[i]) for i in chosen]
