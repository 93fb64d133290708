"""AdaLoRA through peft: LoRA whose rank budget is reallocated during training, from
`init_r` down to `target_r` per module, by importance. The budget schedule needs the total
number of optimizer steps (from the training plan) and a call to `update_and_allocate`
after every optimizer step (a Trainer callback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from peft import AdaLoraConfig
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import TrainerCallback

from tunelab.methods.base import TrainingPlan
from tunelab.methods.lora import LoRA


class AdaLoRAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    init_r: int = Field(default=12, ge=1, description="Rank each module starts with")
    target_r: int = Field(default=8, ge=1, description="Average rank after the budget shrinks")
    tinit: int | None = Field(default=None, ge=0, description=(
        "Steps of full rank before pruning starts; default: the first 10% of the plan"))
    tfinal: int | None = Field(default=None, ge=0, description=(
        "Steps at the final budget at the end; default: the last 30% of the plan"))
    deltaT: int = Field(default=1, ge=1, description="Steps between budget updates")
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    orth_reg_weight: float = Field(default=0.5, ge=0.0)
    target_modules: list[str] | str | None = None

    @model_validator(mode="after")
    def _shrinks(self) -> AdaLoRAOptions:
        if self.target_r > self.init_r:
            raise ValueError(f"target_r ({self.target_r}) must not exceed init_r "
                             f"({self.init_r})")
        return self


class BudgetUpdate(TrainerCallback):
    """Reallocate the rank budget after each optimizer step, while the gradients that
    score each rank's importance are still there (the Trainer zeroes them next).

    peft keeps the current rank pattern in the adapter config, and saving then shrinks the
    checkpoint to it; reloading the best checkpoint into a model whose pattern moved on
    fails on the shapes. So the pattern is held here between steps: checkpoints keep every
    rank (pruned ones are zero in lora_E), and `AdaLoRA.save` shrinks the final model."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.pattern: dict[str, Any] | None = None

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        config = self.model.peft_config[self.model.active_adapter]
        config.rank_pattern = self.pattern
        self.model.base_model.update_and_allocate(state.global_step)
        self.pattern, config.rank_pattern = config.rank_pattern, None


class AdaLoRA(LoRA):
    Options = AdaLoRAOptions
    config_class = AdaLoraConfig
    from_plan: ClassVar[dict[str, str]] = {"total_step": "total_steps"}
    # the budget reaches target_r only at the end of the plan: an earlier "best" checkpoint
    # would hold a model with more ranks than the budget, so training runs to the end
    keeps_best_checkpoint = False

    def plan_values(self, plan: TrainingPlan) -> dict[str, Any]:
        """The schedule as in the AdaLoRA paper unless set: full rank while the weights warm
        up, the budget shrinking through the middle, the final ranks tuned at the end.
        peft's own defaults (0 and 0) prune from the first step to the last."""
        values = super().plan_values(plan)
        if self.options.tinit is None:  # type: ignore[attr-defined]
            values["tinit"] = round(0.1 * plan.total_steps)
        if self.options.tfinal is None:  # type: ignore[attr-defined]
            values["tfinal"] = round(0.3 * plan.total_steps)
        return values

    def callbacks(self, model: Any, plan: TrainingPlan) -> list[TrainerCallback]:
        return [BudgetUpdate(model)]

    def save(self, model: Any, directory: Path) -> None:
        """Keep the ranks the final weights use (lora_E not zero, which after the last
        step is the final budget), so the adapter reloads to the same function."""
        adapter = model.active_adapter
        model.peft_config[adapter].rank_pattern = {
            name: (parameter.detach() != 0).view(-1).tolist()
            for name, parameter in model.base_model.model.named_parameters()
            if f"lora_E.{adapter}" in name}
        super().save(model, directory)
