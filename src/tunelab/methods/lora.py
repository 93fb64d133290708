"""LoRA through peft. The task head is trained in full and saved with the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel

from tunelab.errors import ConfigError
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

    def check(self, model: PreTrainedModel, task: Task) -> None:
        targets = self.options.target_modules  # type: ignore[attr-defined]
        if not isinstance(targets, list):
            return  # None, "all-linear" or a regex: peft resolves those itself
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
        if missing:
            raise ConfigError(f"method.target_modules: no module named {', '.join(missing)} in "
                              f"this model; its linear layers are: {_linear_names(model)}, or "
                              "use 'all-linear'")

    def prepare(self, model: PreTrainedModel, task: Task) -> Any:
        options: LoRAOptions = self.options  # type: ignore[assignment]
        config = LoraConfig(
            task_type=task.peft_task_type, r=options.r, lora_alpha=options.alpha,
            lora_dropout=options.dropout, target_modules=options.target_modules,
            modules_to_save=task.head_modules(model),
        )
        try:
            return get_peft_model(model, config)
        except ValueError as error:  # peft: target modules not found in the model
            raise ConfigError(f"method.target_modules: {str(error).splitlines()[0][:200]}; "
                              f"this model's linear layers are: {_linear_names(model)}, or "
                              "use 'all-linear'") from None

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        resolved = resolve_model(meta["base_model"], meta.get("allow_network", False))
        base = task.build_model(resolved)
        return PeftModel.from_pretrained(base, directory, is_trainable=False)


def _linear_names(model: torch.nn.Module) -> str:
    return ", ".join(sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                             if isinstance(module, torch.nn.Linear)}))
