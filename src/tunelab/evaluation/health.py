"""Signs that training did not work, said plainly with the likely fix: the model does not
beat a baseline tunelab measured, or the training loss did not fall. They go into the run
record (`warnings`), the report and the terminal, and `tunelab models promote` refuses a
run that has any unless given --force."""

from __future__ import annotations

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
    losses = [float(entry["loss"]) for entry in log_history if "loss" in entry]
    if len(losses) >= 3:
        tail = mean(losses[-max(1, len(losses) // 4):])
        if tail >= FALLEN * losses[0]:
            warnings.append(f"the training loss did not fall ({losses[0]:.4f} at the start, "
                            f"{tail:.4f} at the end): {FIX}")
    model = record.test.get(record.metric)
    for name, scores in record.baselines.items():
        baseline = scores.get(record.metric)
        if isinstance(model, float) and isinstance(baseline, float) and model <= baseline:
            warnings.append(f"the fine-tuned model does not beat the "
                            f"{ROW_NAMES.get(name, name)} baseline on test {record.metric} "
                            f"({model:.4f} against {baseline:.4f}): {FIX}")
    return warnings
