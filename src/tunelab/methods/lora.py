"""LoRA through peft: low-rank updates of the attention projections, merged for export."""

from __future__ import annotations

from typing import ClassVar

from peft import LoraConfig
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel

from tunelab.errors import ConfigError
from tunelab.methods.peft_method import PeftMethod, linear_names
from tunelab.tasks.base import Task


class LoRAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(default=8, ge=1)
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # None lets peft pick the attention projections it knows for the architecture;
    # "all-linear" adapts every linear layer of the encoder.
    target_modules: list[str] | str | None = None


class LoRA(PeftMethod):
    Options = LoRAOptions
    config_class = LoraConfig
    renames: ClassVar[dict[str, str]] = {"alpha": "lora_alpha", "dropout": "lora_dropout"}

    def check(self, model: PreTrainedModel, task: Task) -> None:
        targets = self.options.target_modules  # type: ignore[attr-defined]
        if not isinstance(targets, list):
            return  # None, "all-linear" or a regex: peft resolves those itself
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
        if missing:
            raise ConfigError(f"method.target_modules: no module named {', '.join(missing)} in "
                              f"this model; its linear layers are: {linear_names(model)}, or "
                              "use 'all-linear'")
