"""LoRA through peft. The task head is trained in full and saved with the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel

from tunelab.methods.base import Method
from tunelab.models import resolve_model
from tunelab.tasks.base import Task


class LoRAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(default=8, ge=1)
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # None lets peft pick the attention projections it knows for the architecture;
    # "all-linear" adapts every linear layer of the encoder.
    target_modules: list[str] | str | None = None


class LoRA(Method):
    Options = LoRAOptions
    default_lr = 5e-4

    def prepare(self, model: PreTrainedModel, task: Task) -> Any:
        options: LoRAOptions = self.options  # type: ignore[assignment]
        config = LoraConfig(
            task_type=task.peft_task_type, r=options.r, lora_alpha=options.alpha,
            lora_dropout=options.dropout, target_modules=options.target_modules,
            modules_to_save=task.head_modules(model),
        )
        return get_peft_model(model, config)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        resolved = resolve_model(meta["base_model"], meta.get("allow_network", False))
        base = task.build_model(resolved)
        return PeftModel.from_pretrained(base, directory, is_trainable=False)
