"""Config checks shared by the run config and every Options model: a pydantic error as one
line naming the key, and the Hugging Face names users bring for tunelab's keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError, ValidationInfo

from tunelab.errors import ConfigError


def validate_options(model: type[BaseModel], values: dict[str, Any],
                     where: Callable[[str], str] = lambda name: name) -> Any:
    """`model(**values)`, or a one-line ConfigError naming the field (as `where` spells it)
    and what is wrong with it."""
    try:
        return model(**values)
    except ValidationError as error:
        raise validation_problem(error, where) from None


def validation_problem(error: ValidationError, where: Callable[[str], str] = lambda n: n
                       ) -> ConfigKeyError:
    """Pydantic's first error as one line naming the key."""
    first = error.errors()[0]
    key = where(".".join(str(part) for part in first["loc"]
                         if not str(part).startswith("function-")))
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    problem = first["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections names its key itself ("data.train: ...")
        key = problem.partition(":")[0]
        return ConfigKeyError(key, problem)
    return ConfigKeyError(key, f"{key}: {problem}{shown}")


def divides_batch_size(micro: int | None, info: ValidationInfo) -> int | None:
    """training.micro_batch_size set by the user splits the batch evenly (a method's own
    size falls back to the largest divisor; see training/plan.py)."""
    batch = info.data.get("batch_size")
    if micro and batch and batch % micro:
        fits = ", ".join(str(d) for d in range(1, batch + 1) if batch % d == 0)
        raise ValueError(f"does not divide batch_size {batch}; use one of {fits}")
    return micro


class ConfigKeyError(ConfigError):
    """A problem with one config key, kept apart from where the key came from (the file,
    or a `--set` flag), which the caller adds."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = key, problem


# Hugging Face (TrainingArguments, peft, datasets) names that users bring, and tunelab's
HF_NAMES = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size":
    "batch_size", "train_batch_size": "batch_size", "per_device_eval_batch_size":
    "eval_batch_size", "gradient_accumulation_steps": "grad_accum", "lr_scheduler_type":
    "scheduler", "warmup_steps": "warmup_ratio", "eval_steps": "eval_every", "eval_strategy":
    "eval_every", "logging_strategy": "logging_steps", "lora_alpha": "alpha", "lora_dropout":
    "dropout", "model_name_or_path": "name", "max_seq_length": "max_length", "seed_value":
    "seed", "train_file": "train", "validation_file": "dev", "validation": "dev",
    "test_file": "test", "text_field": "text_column", "label_field": "label_column",
    "activation_checkpointing": "gradient_checkpointing",
}
