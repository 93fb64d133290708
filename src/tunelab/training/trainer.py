"""Build a transformers.Trainer from a run config. tunelab does not run its own loop."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from transformers import (
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
)
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tunelab.config import RunConfig
from tunelab.methods.base import Trained, TrainingPlan, trainable_summary
from tunelab.tasks.base import Task
from tunelab.tasks.head_growth import output_layer
from tunelab.training.memory import ReleaseMemory
from tunelab.training.progress import TrainingProgress


def training_arguments(config: RunConfig, plan: TrainingPlan, output_dir: Path, metric: str,
                       lr: float, keep_best: bool = True) -> TrainingArguments:
    t = config.training
    by_steps = plan.eval_steps is not None
    micro = plan.micro_batch or t.batch_size
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=plan.batch_size // micro,
        max_steps=plan.total_steps,  # the plan's count (training/plan.py) decides
        learning_rate=lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # a value below 1 is a fraction of all steps
        weight_decay=t.weight_decay,
        eval_strategy="steps" if by_steps else "epoch",
        save_strategy="steps" if by_steps else "epoch",
        eval_steps=plan.eval_steps,
        save_steps=plan.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model=metric,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=plan.logging_steps,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        dataloader_num_workers=t.dataloader_workers,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        # the frozen-layer cache needs its cache_index column in the collator
        remove_unused_columns=not (t.freeze_layers and t.cache_frozen),
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,  # TrainingProgress shows one bar, without the eval bars
    )


class MeanLossTrainer(Trainer):
    """The Trainer for tunelab's models. Their heads' losses are batch means that ignore
    `num_items_in_batch`, but their forward takes **kwargs, so a plain Trainer would take the
    loss as scaled already and sum, not average, the losses of accumulated micro-batches: a
    batch's gradient would grow with the accumulation steps."""

    loss_is_scaled_for_ga = False


class TrainingClock(TrainerCallback):
    """Adds `train_seconds` to each evaluation in the log history: wall time since training
    began, less the time spent evaluating, so accuracy can be plotted against training time."""

    def on_train_begin(self, args: Any, state: TrainerState, control: Any, **_: Any) -> None:
        self.started = time.perf_counter()
        self.evaluating = 0.0

    def on_log(self, args: Any, state: TrainerState, control: Any, logs: Any = None,
               **_: Any) -> None:
        if logs and "eval_runtime" in logs and state.log_history:
            self.evaluating += logs["eval_runtime"]
            state.log_history[-1]["train_seconds"] = round(
                time.perf_counter() - self.started - self.evaluating, 3)


class EarlyStoppingAfter(EarlyStoppingCallback):
    """Early stopping that starts counting only after `min_step`: a model often sits on a
    plateau, or dips while the learning rate is at its peak, before it settles, and stopping
    there would end the run before it began."""

    def __init__(self, patience: int, min_step: int) -> None:
        super().__init__(patience)
        self.min_step = min_step

    def on_evaluate(self, args: Any, state: TrainerState, control: Any, metrics: Any,
                    **kwargs: Any) -> None:
        if state.global_step < self.min_step:
            return
        super().on_evaluate(args, state, control, metrics, **kwargs)


def build_trainer(config: RunConfig, plan: TrainingPlan, task: Task, model: Any,
                  tokenizer: PreTrainedTokenizerBase,
                  train_set: Any, dev_set: Any, run_dir: Path, lr: float, metric: str,
                  collator: Any = None, extra_callbacks: list[TrainerCallback] | None = None,
                  keep_best: bool = True, checkpoints: str = "checkpoints",
                  min_step: int | None = None, head_lr: float | None = None) -> Trainer:
    """`keep_best`: end on the best dev checkpoint, with early stopping; False trains the
    whole plan and ends on the last step (for methods whose schedule spans all of it).
    `min_step`: no early stopping before it (by default min_epochs, and half the plan).
    `head_lr`: the output layer's own learning rate (None: the run's)."""
    args = training_arguments(config, plan, run_dir / checkpoints, metric, lr, keep_best)
    callbacks: list[Any] = [
        TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))),
        TrainingClock(), ReleaseMemory(),
    ]
    if config.training.early_stopping.enabled and keep_best:
        stopping = config.training.early_stopping
        # not before min_epochs, nor before half the plan: the learning rate decays over the
        # second half, where a run that dipped at the peak recovers
        if min_step is None:
            min_step = max(math.ceil(stopping.min_epochs * plan.steps_per_epoch),
                           plan.total_steps // 2)
        callbacks.append(EarlyStoppingAfter(stopping.patience, min_step))
    trainable, total = trainable_summary(model)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    callbacks.append(TrainingProgress(
        f"training: method {config.method.name}, {trainable:,} of {total:,} parameters, "
        f"{len(train_set)} training and {len(dev_set)} dev examples, on {device} with "
        f"{torch.get_num_threads()} threads", metric))
    callbacks += extra_callbacks or []
    trainer = MeanLossTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=dev_set,
        processing_class=tokenizer, data_collator=collator or task.collator(tokenizer),
        compute_metrics=metric_function(task), callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts
    if head_lr and head_lr != lr and getattr(task, "labels", None):
        with_head_lr(trainer, output_layer(model, len(task.labels))[1], head_lr)
    return trainer


def with_head_lr(trainer: Trainer, head: torch.nn.Module, head_lr: float) -> None:
    """Give the head's parameters their own learning rate: a new head starts from nothing
    and needs larger steps than the pretrained weights under it. The Trainer's optimizer is
    built as usual (its weight-decay groups kept), then each group is split in two."""
    optimizer = trainer.create_optimizer()
    ours = {id(p) for p in head.parameters()}
    groups = []
    for group in optimizer.param_groups:
        settings = {key: value for key, value in group.items() if key != "params"}
        for wanted, lr in ((False, settings["lr"]), (True, head_lr)):
            params = [p for p in group["params"] if (id(p) in ours) == wanted]
            if params:
                groups.append({**settings, "params": params, "lr": lr})
    optimizer.param_groups = []  # nothing has stepped yet: no state to carry
    for group in groups:
        optimizer.add_param_group(group)


def metric_function(task: Task) -> Callable[[Any], dict[str, float]]:
    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        return task.compute_metrics(np.asarray(logits), np.asarray(prediction.label_ids))

    return compute_metrics


def dev_scores(config: RunConfig, task: Task, model: Any, tokenizer: PreTrainedTokenizerBase,
               dev_set: Any) -> dict[str, float]:
    """The model's dev metrics, computed as the Trainer scores its checkpoints, so that they
    compare with the run's best dev metric."""
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, report_to="none", disable_tqdm=True,
                                 per_device_eval_batch_size=config.training.eval_batch_size,
                                 dataloader_pin_memory=torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, eval_dataset=dev_set,
                          processing_class=tokenizer, data_collator=task.collator(tokenizer),
                          compute_metrics=metric_function(task))
        trainer.remove_callback(PrinterCallback)
        scores = trainer.evaluate()
    return {key.removeprefix("eval_"): value for key, value in scores.items()}


def train_with_trainer(trainer: Trainer, checkpoint: str | None) -> Trained:
    """Run the Trainer (resuming from `checkpoint` if given) and say what it did."""
    output = trainer.train(resume_from_checkpoint=checkpoint)
    state = trainer.state
    return Trained(trainer.model, state.global_step, float(state.epoch or 0.0),
                   state.best_metric if state.best_metric is not None else float("nan"),
                   output.metrics.get("train_samples_per_second", 0.0), state.log_history)


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest complete checkpoint. The Trainer writes trainer_state.json last, so a
    checkpoint cut short by kill -9 lacks it (or holds half of it) and is passed over."""
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return None
    complete = []
    for path in directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        complete.append(path)
    return str(max(complete, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if complete else None
