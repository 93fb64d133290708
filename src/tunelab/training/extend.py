"""Keep training while dev improves, when fine-tuning ends below the frozen-encoder probe.

A run that used its whole plan without early stopping was still improving on dev when the
plan ran out. If it is then below the probe that tunelab measured before training, it gets
up to `training.extend_budget` times its plan in further steps, in a second Trainer that
stops as soon as dev stops improving. Only a better dev score replaces the model; otherwise
the run keeps what it had, and the fallback to the probe (runner) decides what ships.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from transformers import Trainer

from tunelab.methods.base import Trained, TrainingPlan
from tunelab.training.probe_start import Probe
from tunelab.training.trainer import train_with_trainer

log = logging.getLogger("tunelab")


def should_extend(trained: Trained, plan: TrainingPlan, probe: Probe | None,
                  budget: float) -> bool:
    """Below the probe on dev, and the whole plan used: early stopping never saw dev stall."""
    return (budget > 0 and probe is not None and probe.beats(trained.best_dev_metric)
            and trained.steps >= plan.total_steps)


def extension_plan(plan: TrainingPlan, budget: float) -> TrainingPlan:
    total = max(1, math.ceil(plan.total_steps * budget))
    return replace(plan, total_steps=total, epochs=total / plan.steps_per_epoch,
                   eval_steps=plan.eval_steps or plan.steps_per_epoch)


def keep_training(trained: Trained, plan: TrainingPlan, probe: Probe | None, budget: float,
                  metric: str, build: Callable[[TrainingPlan], Trainer]) -> Trained:
    """`build(plan)`: a Trainer over the same model and data, early stopping from its first
    evaluation. Returns `trained` unchanged, or extended by the steps that were taken."""
    if not should_extend(trained, plan, probe, budget):
        return trained
    assert probe is not None
    more = extension_plan(plan, budget)
    log.warning("fine-tuning ended below the frozen-encoder probe on dev %s (%.4f against "
                "%.4f) while dev was still improving: training up to %d more steps, while dev "
                "improves", metric, trained.best_dev_metric, probe.dev, more.total_steps)
    kept = copy.deepcopy(trained.model.state_dict())
    extra = train_with_trainer(build(more), None)
    history = trained.log_history + [_shifted(entry, trained) for entry in extra.log_history]
    improved = extra.best_dev_metric > trained.best_dev_metric
    if not improved:
        trained.model.load_state_dict(kept)
    log.warning("after %d more steps the best dev %s is %.4f (%s)", extra.steps, metric,
                max(extra.best_dev_metric, trained.best_dev_metric),
                "the extended model is kept" if improved else "no better: the model before "
                "the extension is kept")
    return Trained(trained.model, trained.steps + extra.steps, trained.epochs + extra.epochs,
                   max(trained.best_dev_metric, extra.best_dev_metric),
                   trained.samples_per_second, history, extended_steps=extra.steps)


def _shifted(entry: dict[str, Any], before: Trained) -> dict[str, Any]:
    """A log entry of the extension, on the run's own step and epoch axis."""
    shifted = dict(entry)
    clock = max((e.get("train_seconds", 0.0) for e in before.log_history), default=0.0)
    for key, offset in (("step", before.steps), ("epoch", before.epochs),
                        ("train_seconds", clock)):
        if key in shifted:
            shifted[key] = shifted[key] + offset
    return shifted
