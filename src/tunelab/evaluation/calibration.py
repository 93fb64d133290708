"""Temperature scaling (Guo et al., 2017): one number T, fitted on dev so that the softmax
of logits / T gives the dev labels the highest likelihood, folded into the output layer
(its weights and bias divided by T), so the saved model needs nothing new to load.

It changes no decision (argmax is the same), only how sure the probabilities say the model
is. Fine-tuning from a fitted head (LP-FT) leaves the head large and the model overconfident
(Tomihari and Sato, 2024): on SST-2, 40% of test predictions above 0.999. Multi-label heads
are left as they are: a user threshold other than 0.5 would change their decisions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from tunelab.errors import ModelError
from tunelab.tasks.head_growth import output_layer

LOG_T_RANGE = (math.log(0.05), math.log(50.0))


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    scores = log_softmax(logits / temperature, axis=1)
    return float(-scores[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    found = minimize_scalar(lambda log_t: nll(logits, targets, math.exp(log_t)),
                            bounds=LOG_T_RANGE, method="bounded")
    return math.exp(float(found.x))


def calibrate(model: nn.Module, task: Any, tokenizer: Any, dev: Any) -> dict[str, float]:
    """Fit T on dev and fold it into the model's output layer; returns what was done."""
    if getattr(task, "multi_label", False) or not hasattr(task, "probe_data") or not len(dev):
        return {}
    try:
        _, layer = output_layer(model, len(task.labels))
    except ModelError:  # no output layer to scale (a prompted language model)
        return {}
    logits, targets = task.probe_data(task.logits_for_examples(model, tokenizer, dev), dev)
    logits = np.asarray(logits, dtype=np.float64)
    temperature = fit_temperature(logits, targets)
    with torch.no_grad():
        layer.weight /= temperature
        if layer.bias is not None:
            layer.bias /= temperature
    return {"temperature": round(temperature, 4),
            "dev_nll_before": round(nll(logits, targets), 4),
            "dev_nll_after": round(nll(logits, targets, temperature), 4)}
