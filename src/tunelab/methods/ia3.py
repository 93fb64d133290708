"""IA3 through peft: learned rescaling vectors on keys, values and the feed-forward
activations; the fewest trainable parameters of the adapter methods, merged for export."""

from __future__ import annotations

from typing import ClassVar

from peft import IA3Config
from pydantic import BaseModel, ConfigDict

from tunelab.methods.lora import LoRA


class IA3Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # None lets peft pick the modules it knows for the architecture (BERT: key, value and
    # the feed-forward output)
    target_modules: list[str] | str | None = None
    feedforward_modules: list[str] | str | None = None


class IA3(LoRA):
    Options = IA3Options
    config_class = IA3Config
    renames: ClassVar[dict[str, str]] = {}
    default_lr = 3e-3
