"""The Task protocol: what the shared training, evaluation, prediction, export and serving
code asks of a task. A new task is one module implementing this, plus one registry line.

A task is built once, from a config and its training examples (`from_config`) or from a
saved run (`from_meta`), and is not changed afterwards: `with_changes` builds a new one.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from tunelab.data.examples import Examples
from tunelab.data.readers import Table

if TYPE_CHECKING:  # an exported model predicts without torch: these load only to train
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tunelab.config import RunConfig
    from tunelab.models import ResolvedModel


class TransformersClass:
    """A class attribute naming a transformers class, imported on first use: importing the
    Auto model classes imports torch, which a served exported model does without."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        import transformers

        return getattr(transformers, self.name)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class EvalResult:
    """Scores of one model on one split."""

    metrics: dict[str, float]
    report: str
    figures: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    per_class_f1: dict[str, float] = field(default_factory=dict)


class _BuiltOnce(ABCMeta):
    """Marks an instance as built when its constructor returns; Task refuses changes after."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        object.__setattr__(instance, "_built", True)
        return instance


class Task(metaclass=_BuiltOnce):
    name: ClassVar[str]
    # The transformers pipeline that serves a saved model of this task, if there is one.
    pipeline_tag: ClassVar[str | None] = None
    # Task settings under `task:` in the config, validated by this model.
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Per-request settings of `predict` (the service and `tunelab predict --option` take them).
    Request: ClassVar[type[BaseModel]] = NoOptions
    # One prediction, as the service documents and returns it.
    Prediction: ClassVar[type[BaseModel]]
    peft_task_type: ClassVar[str]
    auto_model: ClassVar[Any]
    default_metric: ClassVar[str]
    # Columns of the comparison table in report.txt and the model card.
    headline_metrics: ClassVar[tuple[str, ...]]
    # What compute_metrics returns: the names early_stopping.metric may take.
    trainer_metrics: ClassVar[tuple[str, ...]]
    report_kind: ClassVar[str] = "Report"
    intended_use: ClassVar[str] = "Texts like those in the training data."
    # whether predict() takes a pre-tokenised input (a list of words) as well as a text
    accepts_token_lists: ClassVar[bool] = False
    # Bump when `encode` changes its output, so cached encodings are not reused.
    encoding_version: ClassVar[str] = "1"

    def __init__(self, options: BaseModel | None = None, max_length: int = 128) -> None:
        self.options = options if options is not None else self.Options()
        self.max_length = max_length

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_built"):
            raise AttributeError(f"a built task is not changed ({name}); use with_changes()")
        object.__setattr__(self, name, value)

    # --- building ------------------------------------------------------------
    @classmethod
    def options_from(cls, values: dict[str, Any]) -> BaseModel:
        """The task's options from a config section or a saved run's meta (other keys of
        the meta are ignored)."""
        from tunelab.config import validate_options

        return validate_options(cls.Options, {k: v for k, v in values.items()
                                              if k in cls.Options.model_fields},
                                lambda name: f"task.{name}")

    @classmethod
    def from_config(cls, config: RunConfig, train: Any) -> Task:
        """The task of a run, given its training examples."""
        return cls(cls.options_from(config.task.option_values()), config.data.max_length)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Task:
        """The task of a saved run, from model/tunelab.json (see `meta`)."""
        return cls(cls.options_from(meta), meta.get("max_length", 128))

    def meta(self) -> dict[str, Any]:
        """What a saved model needs to rebuild this task: its options, flat, and its name."""
        return {**self.options.model_dump(mode="json"), "task": self.name,
                "max_length": self.max_length}

    def with_changes(self, **changes: Any) -> Task:
        return type(self).from_meta({**self.meta(), **changes})

    # --- data ----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def examples_from_table(cls, table: Table, config: RunConfig) -> Examples:
        """Map a Table's columns to this task's examples; clear errors for bad rows."""

    def check_examples(self, examples: Any, train_source: str) -> None:
        """Raise DataError for held-out examples this task cannot score (say, a label the
        training data does not have)."""

    def check_splits(self, train: Any, dev: Any, test: Any) -> None:
        """Raise DataError when the splits together cannot serve the task (an out-of-scope
        threshold with no out-of-scope examples in dev to fit it on)."""

    def fit_decision(self, model: Any, tokenizer: Any, dev: Any) -> dict[str, Any]:
        """After training: fit what turns logits into decisions on dev (an out-of-scope
        threshold), kept in the task's options and so in the saved model; says what."""
        return {}

    def strata(self, examples: Any) -> Sequence[Hashable] | None:
        """Keys for a stratified split, or None where the task cannot stratify."""
        return None

    @classmethod
    def token_lengths(cls, examples: Any, tokenizer: PreTrainedTokenizerBase
                      ) -> list[int] | None:
        """Untruncated token counts, for data.length_percentile; None where it does not apply."""
        return None

    @abstractmethod
    def encode(self, examples: Any, tokenizer: PreTrainedTokenizerBase) -> Any:
        """A datasets.Dataset of model inputs, `labels` and a `length` column."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Any: ...

    def cache_key(self) -> str:
        """Everything besides the examples and the tokenizer that shapes `encode`'s output."""
        text = json.dumps([self.name, self.encoding_version, self.meta()], sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    # --- model ---------------------------------------------------------------
    @abstractmethod
    def build_model(self, resolved: ResolvedModel, dropout: float | None = None
                    ) -> PreTrainedModel: ...

    def head_modules(self, model: PreTrainedModel) -> list[str]:
        """Names of the modules that form the task head: trained by head-only, saved with
        adapters."""
        base = getattr(model, model.base_model_prefix, None)
        names = [name for name, module in model.named_children()
                 if module is not base and any(True for _ in module.parameters())]
        from torch import nn

        pooler = getattr(base, "pooler", None) if base is not None else None
        if pooler is not None:  # its projection by name: peft merges Linear layers only
            names += [f"pooler.{name}" for name, module in pooler.named_children()
                      if isinstance(module, nn.Linear)]
        return names

    # --- scoring -------------------------------------------------------------
    @abstractmethod
    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        """Metrics for the Trainer's evaluation loop."""

    @abstractmethod
    def evaluate(self, examples: Any, logits: Any) -> EvalResult:
        """Full scores, report text and figures for one split."""

    def baselines(self, train: Any, test: Any) -> dict[str, dict[str, float]]:
        """Scores of simple models fitted on `train` (the majority class) on the `test`
        split, to compare the trained one with. The frozen-encoder probe is scored by the
        runner (training/probe_start.py), for tasks with a probe."""
        return {}

    @abstractmethod
    def agreement(self, a: Any, b: Any) -> float:
        """Share of decisions two sets of outputs (from logits_for_examples) agree on."""

    # --- inference -----------------------------------------------------------
    @abstractmethod
    def logits_for_examples(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                            examples: Any, batch_size: int = 64) -> Any:
        """Model outputs for labelled examples, in the form `evaluate` takes."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                inputs: Sequence[Any], batch_size: int = 64, request: BaseModel | None = None
                ) -> list[dict[str, Any]]:
        """One dict per input, in the shape of `Prediction`; `request` is a `Request`."""

    def prediction_labels(self, prediction: dict[str, Any]) -> list[str]:
        """The labels a prediction names, counted by the service's metrics."""
        return []

    def feedback_labels(self) -> list[str] | None:
        """The labels a correction sent to the service may name; None: no corrections."""
        return None

    # --- description ---------------------------------------------------------
    def head_description(self) -> str:
        """One line for the model card: what the model outputs."""
        return ""

    def describe(self) -> dict[str, Any]:
        """What the service's /v1/model and the model card say about the task."""
        return {"task": self.name, **self.options.model_dump(mode="json"),
                "max_length": self.max_length}
