"""How long a run trains and how often it looks at dev, from the size of its data.

A fixed number of epochs is too few updates for small data: 200 examples in batches of 32
are 7 steps an epoch, so 3 epochs are 21 optimizer steps, and the model barely leaves its
start. With `training.epochs: auto` (the default) a run takes at least MIN_STEPS optimizer
steps and at least MIN_EPOCHS epochs, at most MAX_EPOCHS, and early stopping on dev is the
normal way to end; with `eval_every: auto` it evaluates about EVALUATIONS times whatever its
length, so early stopping has points to compare on long and short runs alike. The
constants come from the defaults study (`bench/defaults.py`, bench/RESULTS.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tunelab.methods.base import TrainingPlan

if TYPE_CHECKING:
    from tunelab.config import RunConfig

MIN_STEPS = 300
MIN_EPOCHS = 3
MAX_EPOCHS = 40
EVALUATIONS = 15
LOG_SHARE = 0.05  # a loss line every 5% of the steps


def micro_batch(batch_size: int, wanted: int | None) -> int:
    """The largest divisor of the batch size up to `wanted` (None: the whole batch)."""
    return max(d for d in range(1, min(wanted or batch_size, batch_size) + 1)
               if batch_size % d == 0)


def training_plan(config: RunConfig, n_train: int, method_micro_batch: int | None = None
                  ) -> TrainingPlan:
    """Steps as the Trainer counts them: batches per epoch, then optimizer steps. The batch
    is split into micro-batches of training.micro_batch_size, or the method's own size."""
    t = config.training
    per_epoch = max(math.ceil(n_train / t.batch_size) // t.grad_accum, 1)
    if t.max_steps:
        total = t.max_steps
    elif t.epochs == "auto":
        epochs = min(max(math.ceil(MIN_STEPS / per_epoch), MIN_EPOCHS), MAX_EPOCHS)
        total = epochs * per_epoch
    else:
        total = math.ceil(t.epochs * per_epoch)
    if t.eval_every == "auto":
        eval_steps: int | None = max(1, math.ceil(total / EVALUATIONS))
    else:
        eval_steps = None if t.eval_every == "epoch" else t.eval_every
    return TrainingPlan(n_train, t.batch_size * t.grad_accum, per_epoch, total,
                        total / per_epoch, eval_steps,
                        t.logging_steps or max(1, math.ceil(total * LOG_SHARE)),
                        micro_batch(t.batch_size, t.micro_batch_size or method_micro_batch))
