"""Classification scores (scikit-learn), the per-class report and the confusion plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)


def trainer_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The few numbers logged at each evaluation during training: the same definitions as
    the test report's (all_metrics), so dev and test macro-F1 mean one thing."""
    out = {"accuracy": float(accuracy_score(gold, predicted))}
    for average in ("macro", "micro", "weighted"):
        out[f"f1_{average}"] = float(f1_score(gold, predicted, average=average, zero_division=0))
    return out


def all_metrics(gold: np.ndarray, predicted: np.ndarray, multi_label: bool) -> dict[str, float]:
    """Averages over the labels that occur in the gold labels or the predictions (scikit-
    learn's default), on dev and test alike: a label absent from both counts neither way."""
    out = {"accuracy": float(accuracy_score(gold, predicted)), "n": len(gold)}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, average=average,
                                                     zero_division=0)
        out.update({f"precision_{average}": float(p), f"recall_{average}": float(r),
                    f"f1_{average}": float(f)})
    if multi_label:
        out["hamming_accuracy"] = float((gold == predicted).mean())
    return out


def per_class_f1(gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str],
                 multi_label: bool) -> dict[str, float]:
    _, _, f1, _ = precision_recall_fscore_support(
        gold, predicted, labels=None if multi_label else list(range(len(labels))),
        average=None, zero_division=0)
    return {label: round(float(f), 6) for label, f in zip(labels, f1, strict=True)}


def per_class_report(gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> str:
    return classification_report(gold, predicted, labels=list(range(len(labels))),
                                 target_names=list(labels), digits=4, zero_division=0)


def plot_confusion(fig: Any, gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str],
                   multi_label: bool) -> None:
    """Row-normalised confusion matrix; for multi-label, one TN/FP/FN/TP row per label."""
    n = len(labels)
    if multi_label:
        matrices = multilabel_confusion_matrix(gold, predicted)
        counts = matrices.reshape(n, 4)
        columns, title = ["TN", "FP", "FN", "TP"], "Per-label outcomes (multi-label)"
    else:
        counts = confusion_matrix(gold, predicted, labels=list(range(n)))
        columns, title = list(labels), "Confusion matrix (rows: true, columns: predicted)"
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.28 * max(n, len(columns)), 30)
    fig.set_size_inches(size, size * (0.9 if not multi_label else 0.5 + 0.05 * n))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ticks = 6 if n > 30 else 9
    ax.set_xticks(range(len(columns)), columns, rotation=90 if len(columns) > 6 else 0,
                  fontsize=ticks)
    ax.set_yticks(range(n), labels, fontsize=ticks)
    ax.set_xlabel("predicted" if not multi_label else "outcome")
    ax.set_ylabel("true" if not multi_label else "label")
    ax.set_title(title)
    if max(n, len(columns)) <= 20:
        for (row, col), value in np.ndenumerate(counts):
            ax.text(col, row, str(value), ha="center", va="center", fontsize=8,
                    color="white" if rates[row, col] > 0.5 else "black")
    fig.tight_layout()
