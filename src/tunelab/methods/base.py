"""The Method protocol: how a task model is prepared for training, how the method takes
part in training (callbacks, the training plan), and how its result is saved, reloaded
and merged for export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedModel, TrainerCallback

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


class Method:
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Learning rate used when training.lr is not set: adapters and heads want larger steps.
    default_lr: ClassVar[float] = 5e-5
    # Whether the trained model can be written back as plain weights of the task model
    # (export asks, and the frozen-layer cache holds only for such methods: a method that
    # adds tokens or layers changes what the lower layers compute).
    mergeable: ClassVar[bool] = True

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def check(self, model: PreTrainedModel, task: Task) -> None:
        """Raise ConfigError for options that cannot apply to this model; cheap, changes
        nothing. Runs before data is encoded and before anything is written."""

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> Any:
        """Return the model to train (frozen, wrapped, or as it is)."""
        return model

    def callbacks(self, model: Any, plan: TrainingPlan) -> list[TrainerCallback]:
        """Trainer callbacks the method needs while training `model` (the prepared one)."""
        return []

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        """Rebuild the trained model from a saved model directory."""
        return task.auto_model.from_pretrained(directory, local_files_only=True)

    @classmethod
    def merged(cls, model: Any) -> PreTrainedModel:
        """The trained model as plain task-model weights; only for mergeable methods."""
        return model


def trainable_summary(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total
