"""Head-only: the encoder is frozen; only the task head (and pooler, if any) trains."""

from __future__ import annotations

from transformers import PreTrainedModel

from tunelab.methods.base import Method, TrainingPlan, in_head
from tunelab.tasks.base import Task


class HeadOnly(Method):
    default_lr = 1e-3

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan
                ) -> PreTrainedModel:
        head = task.head_modules(model)
        for name, parameter in model.named_parameters():
            parameter.requires_grad = in_head(name, head)
        return model
