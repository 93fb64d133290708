"""The base of tasks that predict from a fixed label set (text and token classification):
label maps, a head with one output per label, head surgery when the label set grows,
agreement by argmax, the majority baseline and the data for a linear probe."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from tunelab.errors import DataError
from tunelab.models import ResolvedModel, pretrained_config
from tunelab.tasks.base import EvalResult, Task

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tunelab.config import RunConfig


class LabelledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A fixed label order (default: the training labels, sorted). Continuing a trained model
    # keeps its order and appends new labels, so its head rows stay where they were.
    labels: list[str] | None = None

    @field_validator("labels")
    @classmethod
    def _each_once(cls, labels: list[str] | None) -> list[str] | None:
        return unique_labels(labels) if labels is not None else None


def unique_labels(labels: list[str]) -> list[str]:
    """The labels, or a ValueError naming the first one listed twice."""
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"'{label}' is listed twice; give each label once")
        seen.add(label)
    return labels


class LabelledTask(Task):
    Options = LabelledOptions

    def __init__(self, labels: Sequence[str] = (), max_length: int = 128,
                 options: BaseModel | None = None, **option_values: Any) -> None:
        super().__init__(options if options is not None else self.Options(**option_values),
                         max_length)
        self.labels = list(labels)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_config(cls, config: RunConfig, train: Any) -> LabelledTask:
        options = cls.options_from(config.task.option_values())
        labels = cls.label_set(train, options)
        fixed = getattr(options, "labels", None)
        if fixed is not None:
            missing = [label for label in labels if label not in fixed]
            if missing:
                raise DataError(f"{config.data.train}: labels {', '.join(missing)} are not in "
                                "task.labels; add them to the list or remove the examples")
            labels = list(fixed)
        if len(labels) < 2:
            found = f"'{labels[0]}'" if labels else "none"
            raise DataError(f"{config.data.train}: only one label in the training data "
                            f"({found}); a model needs examples of at least two labels to "
                            "learn to tell apart")
        return cls(labels, config.data.max_length, options)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LabelledTask:
        return cls(meta["labels"], meta.get("max_length", 128), cls.options_from(meta))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "labels": self.labels}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": self.labels}

    # --- data ----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def label_set(cls, examples: Any, options: BaseModel) -> list[str]:
        """The labels the examples use, in the order the head gets them."""

    @abstractmethod
    def check_labels(self, examples: Any, train_source: str) -> None:
        """Raise DataError for a label that the training data does not have."""

    def check_examples(self, examples: Any, train_source: str) -> None:
        self.check_labels(examples, train_source)

    # --- model ---------------------------------------------------------------
    def model_config_kwargs(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": dict(self.label_index)}

    def build_model(self, resolved: ResolvedModel, dropout: float | None = None
                    ) -> PreTrainedModel:
        config = pretrained_config(resolved, dropout, **self.model_config_kwargs())
        # transformers' load report lists the new head as MISSING on every run; tunelab
        # expects that, and names only encoder weights that did not load (below)
        report = logging.getLogger("transformers.modeling_utils")
        level = report.level
        report.setLevel(logging.ERROR)
        try:
            model, loading = self.auto_model.from_pretrained(
                resolved.source, config=config, ignore_mismatched_sizes=True,
                output_loading_info=True, **resolved.from_pretrained_kwargs)
        finally:
            report.setLevel(level)
        not_loaded = {key if isinstance(key, str) else key[0]
                      for key in [*loading["missing_keys"], *loading["mismatched_keys"]]}
        encoder = sorted(key for key in not_loaded
                         if key.startswith(f"{model.base_model_prefix}."))
        if encoder:
            logging.getLogger("tunelab").warning(
                "%s: %d encoder weights are not in the checkpoint and start random (%s); "
                "check that model.name is the model you meant", resolved.source,
                len(encoder), ", ".join(encoder[:4]))
        from tunelab.tasks.head_growth import carry_head_rows, output_layer

        name, _ = output_layer(model, len(self.labels))
        carried = carry_head_rows(model, resolved.source, self.labels)
        # read by training/probe_start.py: only a head that nothing was loaded into is
        # replaced by the probe
        model.tunelab_new_head = f"{name}.weight" in not_loaded and not carried
        return model

    # --- scoring -------------------------------------------------------------
    def agreement(self, a: Any, b: Any) -> float:
        decided = [np.concatenate([np.atleast_1d(np.asarray(x).argmax(-1)) for x in outputs])
                   for outputs in (a, b)]
        return float((decided[0] == decided[1]).mean())

    @abstractmethod
    def majority_baseline(self, train: Any, examples: Any) -> EvalResult: ...

    @abstractmethod
    def probe_data(self, features: Any, examples: Any) -> tuple[np.ndarray, np.ndarray]:
        """The output layer's inputs (`features`, from logits_for_examples under
        head_growth.head_inputs) as rows, with the target of each row: label ids, or
        multi-hot rows for a multi-label task."""

    def baselines(self, train: Any, test: Any) -> dict[str, dict[str, float]]:
        return {"majority": self.majority_baseline(train, test).metrics}

    @staticmethod
    def probe_sample(train: Any, max_examples: int, seed: int) -> Any:
        rng = np.random.default_rng(seed)
        return train.subset(sorted(rng.permutation(len(train))[:max_examples].tolist()))
