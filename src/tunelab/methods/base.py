"""The Method protocol: prepare a task model for training, and reload what it saved."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedModel

if TYPE_CHECKING:
    from tunelab.tasks.base import Task



class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method:
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Learning rate used when training.lr is not set: adapters and heads want larger steps.
    default_lr: ClassVar[float] = 5e-5

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def check(self, model: PreTrainedModel, task: Task) -> None:
        """Raise ConfigError for options that cannot apply to this model; cheap, changes
        nothing. Runs before data is encoded and before anything is written."""

    def prepare(self, model: PreTrainedModel, task: Task) -> Any:
        """Return the model to train (frozen, wrapped, or as it is)."""
        return model

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        """Rebuild the trained model from a saved model directory."""
        return task.auto_model.from_pretrained(directory, local_files_only=True)


def trainable_summary(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total
