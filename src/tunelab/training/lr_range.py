"""A learning-rate range test (Smith 2017; fastai's LR finder), for `training.lr: find`.

A few dozen optimizer steps at exponentially rising learning rates, from a hundredth of the
method's default to a hundred times it, on the run's own data, seeded. The training loss is
smoothed; the rate picked is a tenth of the one where the smoothed loss was lowest, the usual
rule (the lowest point is already on the edge of divergence). The weights are put back as
they were, so the main run starts from the same place. The defaults study
(`bench/defaults.py`, variant `lr-find`) measures it against the fixed defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from tunelab.methods.base import TrainingPlan
from tunelab.training.trainer import MeanLossTrainer, training_arguments

if TYPE_CHECKING:
    from tunelab.config import RunConfig

STEPS = 60
SPAN = 100.0  # the range: default / SPAN .. default * SPAN
SMOOTHING = 0.9
DIVERGED = 4.0  # stop once the smoothed loss is this many times its lowest


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    picked: float


class ExponentialRange(MeanLossTrainer):
    """A Trainer whose schedule multiplies the learning rate by `growth` every step."""

    def __init__(self, *args: Any, growth: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.growth = growth

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                     lambda step: self.growth ** step)
        return self.lr_scheduler


class StopWhenDiverged(TrainerCallback):
    def __init__(self) -> None:
        self.smoothed: list[float] = []
        self.average = 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            control.should_training_stop = True
            return
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        self.smoothed.append(self.average / (1 - SMOOTHING ** (len(self.smoothed) + 1)))
        if self.smoothed[-1] > DIVERGED * min(self.smoothed):
            control.should_training_stop = True


def range_test(config: RunConfig, plan: TrainingPlan, model: Any, train_set: Any,
               collator: Any, tokenizer: Any, default_lr: float, metric: str,
               steps: int = STEPS) -> RangeTest:
    """Run the range test on `model`, batched as the run will be, and put its weights back."""
    start, growth = default_lr / SPAN, (SPAN * SPAN) ** (1 / (steps - 1))
    weights = copy.deepcopy(model.state_dict())
    watcher = StopWhenDiverged()
    set_seed(config.seed)
    with tempfile.TemporaryDirectory() as scratch:
        args = dataclasses.replace(
            training_arguments(config, plan, Path(scratch), metric, start, keep_best=False),
            max_steps=steps, logging_steps=1, eval_strategy="no", save_strategy="no",
            warmup_steps=0, weight_decay=0.0)
        trainer = ExponentialRange(model=model, args=args, train_dataset=train_set,
                                   data_collator=collator, processing_class=tokenizer,
                                   callbacks=[watcher], growth=growth)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    model.load_state_dict(weights)
    set_seed(config.seed)  # the main run draws as it would have without the test
    lrs = [start * growth ** step for step in range(len(watcher.smoothed))]
    if not lrs:
        return RangeTest([], [], default_lr)
    lowest = min(range(len(lrs)), key=watcher.smoothed.__getitem__)
    return RangeTest(lrs, watcher.smoothed, lrs[lowest] / 10)


def plot_range(fig: Any, found: RangeTest) -> None:
    axes = fig.add_subplot(1, 1, 1)
    axes.plot(found.lrs, found.losses, color="tab:blue")
    axes.axvline(found.picked, color="tab:red", linestyle="--",
                 label=f"picked {found.picked:.2g} (a tenth of the rate at the lowest loss)")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (smoothed)")
    axes.set_title("learning-rate range test")
    lowest = found.losses.index(min(found.losses))
    axes.plot([found.lrs[lowest]], [found.losses[lowest]], "o", color="tab:blue",
              label=f"lowest loss at {found.lrs[lowest]:.2g}")
    axes.legend(loc="lower left", fontsize=8)
