"""Out-of-scope detection for single-label classification: a text whose in-scope score is
below a threshold gets the out-of-scope label instead of its best intent.

The score comes from the logits, so the ONNX model decides exactly as PyTorch does:
- `msp`, the maximum softmax probability (Hendrycks and Gimpel, 2017);
- `energy`, the log-sum-exp of the logits (Liu et al., 2020), which keeps how large the
  logits are, and which softmax discards.
Embedding distance (Mahalanobis to the class means, or the nearest training example) was
measured against them in `bench/out_of_scope.py` (BANKING77-OOS, bench/RESULTS.md): it finds
nearly every out-of-domain query, but fewer in-domain out-of-scope ones than `msp` at the same
cost in in-scope accuracy, and `msp` has the best dev figures; so `msp` is the default, and
embedding distance, which would need a second output of the exported graph, is not offered.

The threshold is fitted on dev, which must hold out-of-scope examples (rows labelled with
the out-of-scope label), for a target out-of-scope recall or a target in-scope precision.

Out-of-scope rows in train are learned as a class of their own (Larson et al., 2019, who
found it the best of their approaches on CLINC150): a text whose best class is that one is
out of scope whatever its score, and the threshold catches the rest. On BANKING77-OOS,
learning its in-domain out-of-scope training rows found 0.90 of the in-domain out-of-scope
test queries where the threshold alone found 0.54, at a higher in-scope accuracy (0.835
against 0.81; bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

OOS_ID = -100  # the id of an out-of-scope gold label or prediction (cross-entropy ignores it)


class OutOfScopeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="out_of_scope", description="The label of out-of-scope rows "
                       "in dev and test data, and of out-of-scope predictions")
    score: Literal["msp", "energy"] = "msp"
    target_recall: float | None = Field(default=None, gt=0.0, lt=1.0, description=(
        "Fit the threshold to find this share of dev's out-of-scope examples (default 0.8 "
        "when no target is set)"))
    target_in_scope_precision: float | None = Field(default=None, gt=0.0, lt=1.0, description=(
        "Or: the lowest threshold at which this share of the texts taken as in scope are"))
    threshold: float | None = Field(default=None, description="Fitted on dev by the run; "
                                    "set it to use a threshold of your own")

    @model_validator(mode="after")
    def _one_target(self) -> OutOfScopeOptions:
        if self.target_recall is not None and self.target_in_scope_precision is not None:
            raise ValueError("set target_recall or target_in_scope_precision, not both")
        return self


def in_scope_scores(logits: np.ndarray, kind: str, oos_class: int | None = None
                    ) -> np.ndarray:
    """Higher means more surely one of the intents; -inf where the best class is the learned
    out-of-scope class (`oos_class`), so that no threshold keeps it in scope."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
    scores = log_sum if kind == "energy" else np.exp(top[:, 0] - log_sum)
    if oos_class is not None and len(logits):
        scores = np.where(logits.argmax(axis=-1) == oos_class, -np.inf, scores)
    return scores


def fit_threshold(scores: np.ndarray, out_of_scope: np.ndarray,
                  options: OutOfScopeOptions) -> float:
    """The threshold meeting the target on these (dev) scores: for a recall, the lowest that
    finds that share of the out-of-scope examples; for an in-scope precision, the lowest at
    which the texts kept in scope are that pure (most intents kept)."""
    finite = scores[np.isfinite(scores)]
    if not len(finite):
        return 0.0
    candidates = np.unique(finite)
    candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))
    if options.target_in_scope_precision is not None:
        for threshold in candidates:  # ascending: the first that meets it keeps the most
            kept = scores >= threshold
            if not kept.any() or (~out_of_scope[kept]).mean() >= \
                    options.target_in_scope_precision:
                return float(threshold)
        return float(candidates[-1])
    target = options.target_recall if options.target_recall is not None else 0.8
    oos = np.sort(scores[out_of_scope])
    # below the threshold counts as out of scope: the k-th smallest score, plus a hair
    k = min(len(oos) - 1, int(np.ceil(target * len(oos))) - 1)
    if not np.isfinite(oos[max(k, 0)]):  # the learned class alone meets the target
        return float(candidates[0])
    return float(np.nextafter(oos[max(k, 0)], np.inf))


def oos_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """In-scope accuracy (an intent taken for out-of-scope counts wrong), and the recall and
    precision of the out-of-scope decisions."""
    gold_oos, said_oos = gold == OOS_ID, predicted == OOS_ID
    in_scope = ~gold_oos
    return {
        "in_scope_accuracy": float((predicted[in_scope] == gold[in_scope]).mean())
        if in_scope.any() else float("nan"),
        "oos_recall": float(said_oos[gold_oos].mean()) if gold_oos.any() else float("nan"),
        "oos_precision": float(gold_oos[said_oos].mean()) if said_oos.any() else float("nan"),
    }


def plot_tradeoff(fig: Any, scores: np.ndarray, gold: np.ndarray, best: np.ndarray,
                  threshold: float) -> None:
    """In-scope accuracy against out-of-scope recall as the threshold moves; the fitted
    threshold marked."""
    points, finite = [], scores[np.isfinite(scores)]
    for t in np.quantile(finite, np.linspace(0, 1, 101)) if len(finite) else [0.0]:
        predicted = np.where(scores < t, OOS_ID, best)
        found = oos_metrics(gold, predicted)
        points.append((found["oos_recall"], found["in_scope_accuracy"]))
    axis = fig.add_subplot(1, 1, 1)
    axis.plot(*zip(*points, strict=True), marker=".", markersize=3)
    chosen = oos_metrics(gold, np.where(scores < threshold, OOS_ID, best))
    axis.scatter([chosen["oos_recall"]], [chosen["in_scope_accuracy"]], color="red", zorder=3,
                 label=f"fitted threshold {threshold:.3g}")
    axis.set_xlabel("out-of-scope recall")
    axis.set_ylabel("in-scope accuracy")
    axis.set_title("Out-of-scope threshold: test")
    axis.legend(loc="lower left")
