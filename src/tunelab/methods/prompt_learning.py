"""Prompt learning through peft: trained virtual tokens instead of trained weights.
Prefix tuning prepends them to every layer's keys and values; prompt tuning to the input
embeddings; P-tuning produces them with a small encoder. None of them folds into the base
weights, so their runs are served with the torch backend."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, TrainerCallback, TrainerControl, TrainerState

from tunelab.errors import ConfigError
from tunelab.methods.base import TrainingPlan
from tunelab.methods.peft_method import PeftMethod
from tunelab.tasks.base import Task


class VirtualTokenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(default=20, ge=1, description="Trained tokens prepended")


class PromptEncoderOptions(VirtualTokenOptions):
    encoder_hidden_size: int = Field(default=128, ge=1)


class PromptLearning(PeftMethod):
    Options: ClassVar[type[BaseModel]] = VirtualTokenOptions
    mergeable = False
    default_lr = 1e-2
    # virtual tokens take positions of the input (prompt tuning, P-tuning); prefix tuning
    # adds them to the keys only
    takes_positions: ClassVar[bool] = True
    name: ClassVar[str]

    def check(self, model: PreTrainedModel, task: Task) -> None:
        if self.takes_positions and task.peft_task_type == "TOKEN_CLS":
            raise ConfigError(
                f"method.name: {self.name} prepends virtual tokens to the input, and peft's "
                "token-classification model then returns a tag for each of them too, so "
                "labels and outputs no longer line up (peft fails with 'Expected input "
                "batch_size ... to match target batch_size'); for NER use prefix, lora, "
                "adalora, ia3 or adapter")
        tokens = self.options.num_virtual_tokens  # type: ignore[attr-defined]
        limit = getattr(model.config, "max_position_embeddings", None)
        if self.takes_positions and limit and task.max_length + tokens > limit:
            raise ConfigError(
                f"method.num_virtual_tokens: {tokens} virtual tokens and data.max_length "
                f"{task.max_length} exceed the model's {limit} positions; use at most "
                f"{limit - task.max_length} virtual tokens or a smaller data.max_length")


class PrefixTuning(PromptLearning):
    name = "prefix"
    config_class = PrefixTuningConfig
    takes_positions = False


class PromptTuning(PromptLearning):
    name = "prompt"
    config_class = PromptTuningConfig


class PTuning(PromptLearning):
    name = "p-tuning"
    Options = PromptEncoderOptions
    config_class = PromptEncoderConfig

    def callbacks(self, model: Any, plan: TrainingPlan) -> list[TrainerCallback]:
        return [FoldPromptEncoder(model)]


class FoldPromptEncoder(TrainerCallback):
    """P-tuning's virtual tokens are an encoder's output, and peft saves only that output:
    restoring the best checkpoint writes it into the encoder's *input* embedding, which the
    encoder would then transform a second time (peft#2256; on Banking77 dev 0.906 became
    test 0.438). When training ends the model switches to peft's inference mode, which uses
    the embedding as the tokens: the restored output, or, where nothing was restored, the
    encoder's output written there now. Saved and reloaded, it predicts the same."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def on_train_end(self, args: Any, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        name = self.model.active_adapter
        config = self.model.peft_config[name]
        if config.inference_mode:
            return
        if state.best_model_checkpoint is None or not args.load_best_model_at_end:
            encoder = self.model.prompt_encoder[name]
            with torch.no_grad():
                tokens = self.model.prompt_tokens[name][None, :config.num_virtual_tokens]
                encoder.embedding.weight.copy_(encoder(tokens.to(encoder.embedding.weight.device))[0])
        config.inference_mode = True


