"""Any peft method: an options model mapped onto a peft config class. The task head trains
in full and is saved with the adapter.

A new peft method is a subclass that names its options, its peft config class, the
option names that differ from peft's (`renames`) and any values taken from the training
plan (`from_plan`, say AdaLoRA's total_step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from tunelab.errors import ConfigError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.models import resolve_model
from tunelab.tasks.base import Task


class PeftMethod(Method):
    config_class: ClassVar[type[PeftConfig]]
    renames: ClassVar[dict[str, str]] = {}  # option name -> peft config field
    from_plan: ClassVar[dict[str, str]] = {}  # peft config field -> TrainingPlan attribute
    default_lr = 5e-4
    micro_batch_size = 8

    def peft_config(self, model: PreTrainedModel, task: Task, plan: TrainingPlan
                    ) -> PeftConfig:
        values = {self.renames.get(k, k): v for k, v in self.options.model_dump().items()}
        values.update(self.plan_values(plan))
        return self.config_class(task_type=task.peft_task_type,
                                 modules_to_save=task.head_modules(model), **values)

    def plan_values(self, plan: TrainingPlan) -> dict[str, Any]:
        """peft config fields that follow from the training plan."""
        return {field: getattr(plan, attribute) for field, attribute in self.from_plan.items()}

    def check_plan(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> None:
        self.checked_config(model, task, plan)

    def checked_config(self, model: PreTrainedModel, task: Task, plan: TrainingPlan
                       ) -> PeftConfig:
        try:
            return self.peft_config(model, task, plan)
        except ValueError as error:  # peft's own checks of the settings
            raise ConfigError(f"method: {str(error).splitlines()[0][:300]}") from None

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> Any:
        config = self.checked_config(model, task, plan)
        try:
            return get_peft_model(model, config)
        except ValueError as error:  # peft: target modules not found in the model
            raise ConfigError(f"method.target_modules: {str(error).splitlines()[0][:200]}; "
                              f"this model's linear layers are: {linear_names(model)}, or "
                              "use 'all-linear'") from None

    def save(self, model: Any, directory: Path) -> None:
        # the vocabulary never changes here; "auto" would ask the hub about the base model
        model.save_pretrained(directory, save_embedding_layers=False)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        resolved = resolve_model(meta["base_model"], meta.get("allow_network", False))
        base = task.build_model(resolved)
        return PeftModel.from_pretrained(base, directory, is_trainable=False)

    @classmethod
    def for_export(cls, model: Any) -> PreTrainedModel | None:
        return model.merge_and_unload() if cls.mergeable else None


def linear_names(model: torch.nn.Module) -> str:
    return ", ".join(sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                             if isinstance(module, torch.nn.Linear)}))
