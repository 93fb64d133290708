"""The Method protocol: how a task model is prepared for training, how the method takes
part in training (callbacks, the training plan), and how its result is saved, reloaded
and merged for export."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedModel, TrainerCallback

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.tasks.base import Task


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainingPlan:
    """What training will do, known before the model is built."""

    train_examples: int
    batch_size: int  # examples per optimizer step (batch size x gradient accumulation)
    steps_per_epoch: int
    total_steps: int
    epochs: float
    eval_steps: int | None = None  # None: at the end of each epoch
    logging_steps: int = 1
    micro_batch: int = 0  # examples a forward pass holds; 0: the whole batch


@dataclass
class Trained:
    """What training produced, by the transformers Trainer or by a method's own `fit`."""

    model: Any
    steps: int = 0
    epochs: float = 0.0
    best_dev_metric: float = float("nan")
    samples_per_second: float = 0.0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    extended_steps: int = 0  # steps taken after the plan (training/extend.py)
    tokenizer: Any = None  # a method whose model reads other tokens (a prompted LM) says so


class Method:
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Learning rate used when training.lr is not set: adapters and heads want larger steps.
    default_lr: ClassVar[float] = 5e-5
    # Whether what trains is a change of the task model's own weights (mergeable into them).
    # The frozen-layer cache holds only then: a method that adds tokens or layers changes
    # what the lower layers compute.
    mergeable: ClassVar[bool] = True
    # False: train the whole plan and keep the last step, with no early stopping (for a
    # method whose schedule spans the plan, such as AdaLoRA's rank budget)
    keeps_best_checkpoint: ClassVar[bool] = True
    # False: the method learns nothing from examples (zero-shot), so data.train is optional
    needs_training_data: ClassVar[bool] = True
    # False: the method builds its own output layer (zero-/few-shot), so the task model's
    # new head gets no start from the probe; the probe is still fitted as the baseline
    uses_task_head: ClassVar[bool] = True
    # Examples a forward pass holds when training.micro_batch_size is not set; the rest of
    # the batch comes by gradient accumulation. A method that trains few weights spends its
    # memory on activations, so it takes small micro-batches (training/plan.py).
    micro_batch_size: ClassVar[int | None] = None

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def check(self, model: PreTrainedModel, task: Task) -> None:
        """Raise ConfigError for options that cannot apply to this model; cheap, changes
        nothing. Runs before data is encoded and before anything is written."""

    def check_plan(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> None:
        """Raise ConfigError for options that conflict with the training plan (AdaLoRA's
        schedule against its steps); runs before the probe is fitted and anything written."""

    def use_data(self, task: Task, tokenizer: Any, train_set: Any) -> Any:
        """See the encoded training set before the plan is made and the model prepared (a
        method that measures the data to build its model, such as pruning by importance),
        and return the set to train on (with more examples, such as distillation's
        unlabelled texts)."""
        return train_set

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> Any:
        """Return the model to train (frozen, wrapped, or as it is)."""
        return model

    def callbacks(self, model: Any, plan: TrainingPlan) -> list[TrainerCallback]:
        """Trainer callbacks the method needs while training `model` (the prepared one)."""
        return []

    def fit(self, model: Any, task: Task, tokenizer: Any, train: Any, dev: Any,
            plan: TrainingPlan, run_dir: Path) -> Trained | None:
        """Train `model` on the train examples without the transformers Trainer: a method
        with its own loop (contrastive pairs, a closed-form head) or none at all. None, the
        default, lets the runner train with the Trainer."""
        return None

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        """Rebuild the trained model from a saved model directory."""
        return task.auto_model.from_pretrained(directory, local_files_only=True)

    @classmethod
    def for_export(cls, model: Any) -> PreTrainedModel | None:
        """The trained model as one plain torch module for export (merged into the base
        weights where the method merges), or None where it cannot be exported."""
        return model


def single_label_text(task: Task, method: str) -> None:
    """A ConfigError unless the run classifies texts into one label each (the methods that
    match texts to labels: zero-shot, few-shot, prompt-lm)."""
    multi = getattr(task, "multi_label", False)
    if task.name != "text-classification" or multi:
        raise ConfigError(f"method: {method} classifies single-label text; this run is "
                          f"{task.name}{' (multi-label)' if multi else ''}; use method: full "
                          "or lora")


def in_head(name: str, head: list[str]) -> bool:
    """Whether parameter `name` belongs to one of the head modules (Task.head_modules)."""
    return any(name == part or name.startswith(f"{part}.") or f".{part}." in f".{name}"
               for part in head)


def trainable_summary(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total
