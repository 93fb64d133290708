"""Signs that training did not work, said plainly with the likely fix. They are judged on
dev, where the run makes its choices: the fine-tuned model ended below the frozen-encoder
probe (and the run shipped the probe), the shipped model does not beat the majority class,
or, without a probe to compare with, the training loss did not fall. They go into the run
record (`warnings`), the report and the terminal, and `tunelab models promote` refuses a
run that has any unless given --force."""

from __future__ import annotations

import math
from statistics import mean
from typing import Any

from tunelab.evaluation.report import ROW_NAMES
from tunelab.record import RunRecord

FIX = ("train longer (training.epochs) or try another learning rate (training.lr; the "
       "method's default applies when it is unset)")
# the loss "fell" when the last quarter of logged losses averages under this share of the
# first logged loss; a model stuck on a plateau stays near its first loss
FALLEN = 0.9


def training_warnings(record: RunRecord, log_history: list[dict[str, Any]]) -> list[str]:
    warnings = []
    metric, tuned = record.metric, record.train.best_dev_metric
    probe = record.dev_baselines.get("probe", {}).get(metric)
    if record.shipped == "probe" and isinstance(probe, float):
        warnings.append(f"fine-tuning ended below the {ROW_NAMES['probe']} baseline on dev "
                        f"{metric} ({tuned:.4f} against {probe:.4f}), so the run ships that "
                        f"baseline model instead: {FIX}")
    shipped = probe if record.shipped == "probe" else tuned
    majority = record.dev_baselines.get("majority", {}).get(metric)
    if isinstance(majority, float) and isinstance(shipped, float) and shipped <= majority:
        warnings.append(f"the model does not beat the {ROW_NAMES['majority']} baseline on "
                        f"dev {metric} ({shipped:.4f} against {majority:.4f}): {FIX}")
    losses = [float(entry["loss"]) for entry in log_history if "loss" in entry]
    if probe is None and len(losses) >= 3:
        tail = mean(losses[-max(1, len(losses) // 4):])
        if tail >= FALLEN * losses[0] and not math.isnan(tail):
            warnings.append(f"the training loss did not fall ({losses[0]:.4f} at the start, "
                            f"{tail:.4f} at the end): {FIX}")
    return warnings
