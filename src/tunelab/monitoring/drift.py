"""Population stability index (PSI) between two distributions of predicted labels and of
confidences. PSI = sum((p - q) * ln(p / q)); by the usual rule of thumb, below 0.1 is
stable, 0.1-0.2 a moderate shift, above 0.2 a significant one."""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)
EPSILON = 1e-4  # keeps a bucket that one side never saw from dividing by zero


def shares(counts: dict[str, float], keys: Iterable[str]) -> dict[str, float]:
    keys = list(keys)
    total = sum(counts.get(k, 0.0) for k in keys) or 1.0
    return {k: max(counts.get(k, 0.0) / total, EPSILON) for k in keys}


def psi_terms(reference: dict[str, float], current: dict[str, float]) -> dict[str, float]:
    keys = sorted(set(reference) | set(current))
    p, q = shares(current, keys), shares(reference, keys)
    return {k: (p[k] - q[k]) * math.log(p[k] / q[k]) for k in keys}


def confidence_bucket(score: float) -> str:
    for low, high in itertools.pairwise(CONFIDENCE_BINS):
        if score < high:
            return f"{low:.2f}-{min(high, 1.0):.2f}"
    return "1.00"


def count_predictions(predictions: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Label and confidence-bucket counts of single-label predictions."""
    labels: Counter[str] = Counter()
    confidence: Counter[str] = Counter()
    for p in predictions:
        if "label" in p:
            labels[p["label"]] += 1
            confidence[confidence_bucket(float(p.get("score", 0.0)))] += 1
    return {"labels": dict(labels), "confidence": dict(confidence)}


@dataclass
class DriftReport:
    label_psi: float
    confidence_psi: float
    per_label: list[tuple[str, float, float, float]]  # label, reference share, now, PSI term
    n_reference: int
    n_current: int

    @property
    def psi(self) -> float:
        return max(self.label_psi, self.confidence_psi)


def compare(reference: dict[str, dict[str, float]], current: dict[str, dict[str, float]]
            ) -> DriftReport:
    label_terms = psi_terms(reference["labels"], current["labels"])
    keys = list(label_terms)
    ref_share, cur_share = shares(reference["labels"], keys), shares(current["labels"], keys)
    per_label = sorted(((k, ref_share[k], cur_share[k], label_terms[k]) for k in keys),
                       key=lambda row: -row[3])
    return DriftReport(
        label_psi=sum(label_terms.values()),
        confidence_psi=sum(psi_terms(reference["confidence"], current["confidence"]).values()),
        per_label=per_label, n_reference=int(sum(reference["labels"].values())),
        n_current=int(sum(current["labels"].values())))


class RollingWindow:
    """The service's most recent predictions, for /v1/monitor."""

    def __init__(self, size: int = 5000) -> None:
        self.items: deque[tuple[str, float]] = deque(maxlen=size)

    def add(self, predictions: Sequence[dict[str, Any]]) -> None:
        for p in predictions:
            if "label" in p:
                self.items.append((p["label"], float(p.get("score", 0.0))))

    def counts(self) -> dict[str, dict[str, float]]:
        return count_predictions({"label": label, "score": score} for label, score in self.items)
