"""Entity-level scores with seqeval (strict IOB2), token accuracy, and a per-type plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

Tags = Sequence[Sequence[str]]


def entity_metrics(gold: Tags, predicted: Tags) -> dict[str, float]:
    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    strict = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    out: dict[str, float] = {
        "f1": float(f1_score(gold, predicted, **strict)),
        "precision": float(precision_score(gold, predicted, **strict)),
        "recall": float(recall_score(gold, predicted, **strict)),
        "f1_macro": float(f1_score(gold, predicted, average="macro", **strict)),
        "token_accuracy": token_accuracy(gold, predicted),
        "n": len(gold),
    }
    report = classification_report(gold, predicted, output_dict=True, **strict)
    for kind, row in report.items():
        if not kind.endswith("avg"):
            out[f"f1_{kind}"] = float(row["f1-score"])
    return out


def trainer_metrics(gold: Tags, predicted: Tags) -> dict[str, float]:
    """The numbers logged at each evaluation during training."""
    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    return {"f1": float(f1_score(gold, predicted, mode="strict", scheme=IOB2, zero_division=0)),
            "token_accuracy": token_accuracy(gold, predicted)}


def token_accuracy(gold: Tags, predicted: Tags) -> float:
    pairs = [(g, p) for gs, ps in zip(gold, predicted, strict=True)
             for g, p in zip(gs, ps, strict=True)]
    return sum(g == p for g, p in pairs) / max(len(pairs), 1)


def entity_report(gold: Tags, predicted: Tags) -> str:
    return classification_report([list(s) for s in gold], [list(s) for s in predicted],
                                 mode="strict", scheme=IOB2, digits=4, zero_division=0)


def plot_entity_scores(fig: Any, metrics: dict[str, float]) -> None:
    """Entity F1 per type, as horizontal bars."""
    kinds = sorted(key[3:] for key in metrics if key.startswith("f1_") and key != "f1_macro")
    scores = [metrics[f"f1_{kind}"] for kind in kinds]
    fig.set_size_inches(7, 1.2 + 0.4 * len(kinds))
    ax = fig.add_subplot()
    ax.barh(kinds, scores, color="tab:blue")
    for y, score in enumerate(scores):
        ax.text(min(score + 0.01, 0.93), y, f"{score:.3f}", va="center")
    ax.set_xlim(0, 1)
    ax.set_xlabel("entity F1 (strict)")
    ax.set_title(f"Entity F1 by type (micro F1 {metrics['f1']:.3f})")
    ax.invert_yaxis()
    fig.tight_layout()
