"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): small down- and
up-projections with a residual, inserted after a block's output projection. Everything
else is frozen; the adapters, the layer norms and the task head train.

Pfeiffer places one adapter after each layer's feed-forward block; Houlsby places one
after the attention block as well. peft has no such method and AdapterHub's `adapters`
pins transformers 4.x, hence this module. The adapters add layers, so the run is not
merged into the base weights; it exports to ONNX with the adapters in the graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from tunelab.errors import ConfigError
from tunelab.methods.base import Method, TrainingPlan, in_head
from tunelab.models import resolve_model
from tunelab.tasks.base import Task

WEIGHTS, SETTINGS = "adapter_model.safetensors", "bottleneck_adapters.json"
# Where the adapters go in a BERT-style layer: the output projection of each block.
PLACES = {"pfeiffer": ("output.dense",), "houlsby": ("attention.output.dense", "output.dense")}


class AdapterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pfeiffer", "houlsby"] = "pfeiffer"
    reduction_factor: int = Field(default=16, ge=1, description="Hidden size / bottleneck")


class Bottleneck(nn.Module):
    """x + up(relu(down(x))), starting as the identity (up is zero)."""

    def __init__(self, size: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(size, bottleneck)
        self.up = nn.Linear(bottleneck, size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


class WithAdapter(nn.Module):
    """A projection followed by its adapter."""

    def __init__(self, projection: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.projection(x))


def adapter_targets(model: PreTrainedModel, kind: str) -> list[str]:
    """Names of the projections that get an adapter, one per place per layer."""
    layers = [name for name, module in model.named_modules()
              if isinstance(module, nn.ModuleList) and name.endswith("encoder.layer")]
    if not layers:
        raise ConfigError(f"method: bottleneck adapters need a BERT-style encoder "
                          f"(encoder.layer); {type(model).__name__} has none; use lora")
    stack = model.get_submodule(layers[0])
    targets = []
    for index in range(len(stack)):
        for place in PLACES[kind]:
            name = f"{layers[0]}.{index}.{place}"
            if isinstance(_get(model, name), nn.Linear):
                targets.append(name)
    return targets


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def insert_adapters(model: PreTrainedModel, options: AdapterOptions) -> PreTrainedModel:
    for name in adapter_targets(model, options.kind):
        projection = model.get_submodule(name)
        bottleneck = max(1, projection.out_features // options.reduction_factor)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute,
                WithAdapter(projection, Bottleneck(projection.out_features, bottleneck)))
    return model


def trained_names(model: nn.Module, head: list[str]) -> list[str]:
    """Parameters that train: adapters, layer norms and the task head."""
    return [name for name, _ in model.named_parameters()
            if ".adapter." in name or "LayerNorm" in name or in_head(name, head)]


class BottleneckAdapters(Method):
    Options = AdapterOptions
    default_lr = 1e-3
    mergeable: ClassVar[bool] = False
    micro_batch_size = 8

    def check(self, model: PreTrainedModel, task: Task) -> None:
        adapter_targets(model, self.options.kind)  # type: ignore[attr-defined]

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> Any:
        insert_adapters(model, self.options)  # type: ignore[arg-type]
        self.head = task.head_modules(model)
        train = set(trained_names(model, self.head))
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name in train
        return model

    def save(self, model: Any, directory: Path) -> None:
        """Only what trained, and the settings to rebuild the rest from the base model."""
        directory.mkdir(parents=True, exist_ok=True)
        state = model.state_dict()
        save_file({name: state[name].contiguous() for name in trained_names(model, self.head)},
                  str(directory / WEIGHTS))
        (directory / SETTINGS).write_text(json.dumps(self.options.model_dump()))
        model.config.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        options = AdapterOptions(**json.loads((directory / SETTINGS).read_text()))
        resolved = resolve_model(meta["base_model"], meta.get("allow_network", False))
        model = insert_adapters(task.build_model(resolved), options)
        _, unexpected = model.load_state_dict(load_file(directory / WEIGHTS), strict=False)
        if unexpected:
            raise ConfigError(f"{directory}: {WEIGHTS} does not fit the model "
                              f"({len(unexpected)} unknown weights)")
        return model.eval()
