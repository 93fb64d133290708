"""A linear head fitted on frozen features: logistic regression on centred inputs scaled by
one number (their mean standard deviation), folded back into one weight matrix and bias
that act on the raw features, so the result can be written into the model's own output
layer (see training/probe_start.py). One scale for all dimensions, not one each: a nearly
constant dimension would otherwise get an enormous weight."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

# an output that the sample never shows (a label absent from it, or present in every row)
# gets no weights and this logit margin below (or above) the fitted ones
ABSENT_MARGIN = 5.0


def fit_linear_head(features: np.ndarray, targets: np.ndarray, n_outputs: int,
                    multi_label: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight (n_outputs, dim), bias (n_outputs,)) such that `features @ weight.T + bias`
    are the logits of the fitted model: softmax gives the logistic regression's class
    probabilities (single-label: `targets` are ids) and sigmoid its per-label ones
    (multi-label: `targets` are multi-hot rows)."""
    centre, scale = features.mean(axis=0), float(features.std(axis=0).mean()) or 1.0
    scaled = (features - centre) / scale
    weight = np.zeros((n_outputs, features.shape[1]))
    bias = np.zeros(n_outputs)
    if multi_label:
        for j in range(n_outputs):
            column = targets[:, j]
            if column.min() == column.max():  # always or never on in the sample
                bias[j] = ABSENT_MARGIN if column.min() else -ABSENT_MARGIN
                continue
            fitted = _regression(seed).fit(scaled, column)
            weight[j], bias[j] = fitted.coef_[0], fitted.intercept_[0]
    else:
        present = np.unique(targets)
        bias[:] = -ABSENT_MARGIN
        if len(present) == 1:
            bias[present[0]] = ABSENT_MARGIN
        else:
            fitted = _regression(seed).fit(scaled, targets)
            coef, intercept = fitted.coef_, fitted.intercept_
            if len(present) == 2:  # one row for the second class: split it symmetrically
                coef = np.concatenate([-coef / 2, coef / 2])
                intercept = np.concatenate([-intercept / 2, intercept / 2])
            weight[present], bias[present] = coef, intercept
            bias[np.setdiff1d(np.arange(n_outputs), present)] = intercept.min() - ABSENT_MARGIN
    return weight / scale, bias - (weight / scale) @ centre


def _regression(seed: int) -> LogisticRegression:
    return LogisticRegression(max_iter=2000, random_state=seed)
