"""The Task protocol: everything the shared training, evaluation and prediction code
asks of a task. A new task is one module implementing this, plus one registry line."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from tunelab.data.readers import Table
from tunelab.models import ResolvedModel

if TYPE_CHECKING:
    from tunelab.config import RunConfig

# Config attributes that hold dropout rates, across the encoder families we support.
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
    "classifier_dropout", "hidden_dropout", "attention_probs_dropout",
)


def sigmoid(x: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def carry_head_rows(model: PreTrainedModel, source: str, labels: Sequence[str]) -> None:
    """When `source` is a trained tunelab model with another label list, copy its head's
    rows for the labels both share (by name), so continuing it keeps what it knew; rows of
    new labels stay freshly initialised."""
    import json
    from pathlib import Path

    meta = Path(source) / "tunelab.json"
    weights = Path(source) / "model.safetensors"
    if not meta.is_file() or not weights.is_file():
        return
    old = json.loads(meta.read_text(encoding="utf-8")).get("labels", [])
    if list(old) == list(labels):
        return
    from safetensors.torch import load_file

    saved = load_file(weights)
    index = {label: i for i, label in enumerate(old)}
    shared = [(i, index[label]) for i, label in enumerate(labels) if label in index]
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(f"{model.base_model_prefix}."):
                continue  # encoder weights were loaded as they are
            before = saved.get(name)
            if (before is not None and before.shape[0] == len(old)
                    and parameter.shape[0] == len(labels) and before.shape[1:] ==
                    parameter.shape[1:]):
                for new_row, old_row in shared:
                    parameter[new_row] = before[old_row]


@dataclass
class EvalResult:
    """Scores of one model on one split."""

    metrics: dict[str, float]
    report: str
    figures: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    per_class_f1: dict[str, float] = field(default_factory=dict)


class Task(ABC):
    name: ClassVar[str]
    peft_task_type: ClassVar[str]
    auto_model: ClassVar[Any]
    default_metric: ClassVar[str]
    # Columns of the comparison table in report.txt and the model card.
    headline_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "f1_macro", "f1_micro",
                                                   "f1_weighted")
    # What compute_metrics returns: the names early_stopping.metric may take.
    trainer_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "f1_macro", "f1_micro",
                                                  "f1_weighted")
    report_kind: ClassVar[str] = "Per-class report"
    # whether predict() takes a pre-tokenised input (a list of words) as well as a text
    accepts_token_lists: ClassVar[bool] = False
    intended_use: ClassVar[str] = (
        "Classifying short texts like those in the training data into the labels above. Check "
        "the per-class report before relying on a label with few training examples.")

    def __init__(self, labels: Sequence[str] = (), multi_label: bool = False,
                 threshold: float = 0.5, max_length: int = 128) -> None:
        self.labels = list(labels)
        self.multi_label = multi_label
        self.threshold = threshold
        self.max_length = max_length

    @classmethod
    def from_config(cls, config: RunConfig, labels: Sequence[str] = ()) -> Task:
        return cls(labels, config.task.multi_label, config.task.threshold, config.data.max_length)

    def head_description(self) -> str:
        """One line for the model card: what the head outputs."""
        if self.multi_label:
            return (f"Multi-label: a sigmoid score per label, threshold {self.threshold}. Every "
                    "input gets zero or more of the labels, also when none fits.")
        return ("Single-label: a softmax over the labels. Every input gets one label, also when "
                "none fits.")

    def meta(self) -> dict[str, Any]:
        """What a saved model needs to rebuild this task; stored in model/tunelab.json."""
        return {"task": self.name, "labels": self.labels, "multi_label": self.multi_label,
                "threshold": self.threshold, "max_length": self.max_length}

    # --- data -------------------------------------------------------------
    @abstractmethod
    def examples_from_table(self, table: Table, config: RunConfig) -> Any:
        """Map a Table's columns to this task's examples; clear errors for bad rows."""

    @abstractmethod
    def label_set(self, examples: Any) -> list[str]: ...

    @abstractmethod
    def check_labels(self, examples: Any, train_source: str) -> None:
        """Raise DataError for a label that the training data does not have."""

    @abstractmethod
    def strata(self, examples: Any) -> Sequence[Hashable] | None:
        """Keys for a stratified split, or None where the task cannot stratify."""

    @abstractmethod
    def encode(self, examples: Any, tokenizer: PreTrainedTokenizerBase) -> Any:
        """A datasets.Dataset of model inputs, `labels` and a `length` column."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Any: ...

    def token_lengths(self, examples: Any, tokenizer: PreTrainedTokenizerBase
                      ) -> list[int] | None:
        """Untruncated token counts, for data.length_percentile; None where it does not apply
        (NER splits long sentences into windows instead)."""
        return None

    # --- model ------------------------------------------------------------
    def build_model(self, resolved: ResolvedModel, dropout: float | None = None
                    ) -> PreTrainedModel:
        config = AutoConfig.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs,
                                            **self.model_config_kwargs())
        if dropout is not None:
            for attribute in DROPOUT_ATTRIBUTES:
                if isinstance(getattr(config, attribute, None), float):
                    setattr(config, attribute, dropout)
        model = self.auto_model.from_pretrained(
            resolved.source, config=config, ignore_mismatched_sizes=True,
            **resolved.from_pretrained_kwargs)
        carry_head_rows(model, resolved.source, self.labels)
        return model

    def model_config_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
        }

    def head_modules(self, model: PreTrainedModel) -> list[str]:
        """Names of the modules that form the task head: trained by head-only, saved by LoRA."""
        base = getattr(model, model.base_model_prefix, None)
        names = [name for name, module in model.named_children()
                 if module is not base and any(True for _ in module.parameters())]
        if base is not None and getattr(base, "pooler", None) is not None:
            names.append("pooler")
        return names

    # --- scoring ----------------------------------------------------------
    @abstractmethod
    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        """Metrics for the Trainer's evaluation loop."""

    @abstractmethod
    def evaluate(self, examples: Any, logits: np.ndarray) -> EvalResult:
        """Full scores, report text and figures for one split."""

    @abstractmethod
    def majority_baseline(self, train: Any, examples: Any) -> EvalResult: ...

    @abstractmethod
    def probe_baseline(self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       train: Any, examples: Any, max_examples: int, seed: int) -> EvalResult:
        """The pretrained encoder, frozen, with a freshly fitted linear head."""

    def agreement(self, a: Any, b: Any) -> float:
        """Share of decisions two sets of outputs agree on: labels per example, tags per
        word, or each label's yes/no when multi-label."""
        if self.multi_label:
            return float(((sigmoid(a) >= self.threshold) == (sigmoid(b) >= self.threshold))
                         .all(axis=-1).mean())
        decided = [np.concatenate([np.atleast_1d(np.asarray(x).argmax(-1)) for x in outputs])
                   for outputs in (a, b)]
        return float((decided[0] == decided[1]).mean())

    # --- inference --------------------------------------------------------
    @abstractmethod
    def logits_for_examples(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                            examples: Any, batch_size: int = 64) -> Any:
        """Model outputs for labelled examples, in the form `evaluate` takes."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                inputs: Sequence[Any], batch_size: int = 64) -> list[dict[str, Any]]: ...

