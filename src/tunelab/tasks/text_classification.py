"""Text classification: single-label (softmax) or multi-label (sigmoid with a threshold),
on one text or a text pair."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tunelab.data.readers import Table
from tunelab.errors import DataError, did_you_mean
from tunelab.inference import as_features, batched_outputs, for_model, on_device, sigmoid, softmax
from tunelab.json_tokenizer import collator_for
from tunelab.tasks.base import EvalResult, TransformersClass
from tunelab.tasks.labelled import LabelledOptions, LabelledTask, unique_labels
from tunelab.tasks.out_of_scope import (
    OOS_ID,
    OutOfScopeOptions,
    fit_threshold,
    in_scope_scores,
    oos_metrics,
    plot_tradeoff,
)
from tunelab.tasks.text_examples import TextExamples, natural_key, read_text_examples

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

    from tunelab.config import RunConfig


class TextClassificationOptions(LabelledOptions):
    multi_label: bool = False
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    # a threshold on the in-scope score, fitted on dev (tasks/out_of_scope.py)
    out_of_scope: OutOfScopeOptions | None = None

    @model_validator(mode="after")
    def _single_label_oos(self) -> TextClassificationOptions:
        if self.out_of_scope is not None and self.multi_label:
            raise ValueError("out_of_scope is for single-label classification; a multi-label "
                             "text with no label above the threshold is already out of scope")
        return self


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                  max_length=200)]] | None = Field(
        default=None, min_length=2, max_length=500, description="Zero-shot runs (torch "
        "backend): classify into these labels instead of the run's own")

    @field_validator("labels")
    @classmethod
    def _each_once(cls, labels: list[str] | None) -> list[str] | None:
        return unique_labels(labels) if labels is not None else None


class TextPrediction(BaseModel):
    label: str | None = Field(default=None, description="The predicted label (single-label)")
    labels: list[str] | None = Field(default=None, description="The labels whose score passes "
                                     "the threshold (multi-label)")
    score: float | None = Field(default=None, description="Probability of `label`")
    probabilities: dict[str, float]


class TextClassification(LabelledTask):
    """Single-label (softmax) or multi-label (sigmoid with a threshold), on one text or a
    text pair."""

    name = "text-classification"
    pipeline_tag = "text-classification"
    Options = TextClassificationOptions
    Prediction = TextPrediction
    Request = TextRequest
    peft_task_type = "SEQ_CLS"
    auto_model = TransformersClass("AutoModelForSequenceClassification")
    headline_metrics = ("accuracy", "f1_macro", "f1_micro", "f1_weighted")
    trainer_metrics = ("accuracy", "f1_macro", "f1_micro", "f1_weighted")
    report_kind = "Per-class report"
    intended_use = (
        "Classifying short texts like those in the training data into the labels above. Check "
        "the per-class report before relying on a label with few training examples.")

    @property
    def multi_label(self) -> bool:
        return self.options.multi_label  # type: ignore[attr-defined]

    @property
    def threshold(self) -> float:
        return self.options.threshold  # type: ignore[attr-defined]

    @property
    def oos(self) -> OutOfScopeOptions | None:
        return self.options.out_of_scope  # type: ignore[attr-defined]

    @property
    def oos_class(self) -> int | None:
        """The class learned from out-of-scope rows in train, if there were any."""
        return self.label_index.get(self.oos.label) if self.oos is not None else None

    def as_decided(self, ids: np.ndarray) -> np.ndarray:
        """Gold ids as `decide` gives them: the learned out-of-scope class as OOS_ID."""
        return ids if self.oos_class is None else np.where(ids == self.oos_class, OOS_ID, ids)

    @property
    def default_metric(self) -> str:  # type: ignore[override]
        return "f1_micro" if self.multi_label else "accuracy"

    def head_description(self) -> str:
        if self.multi_label:
            return (f"Multi-label: a sigmoid score per label, threshold {self.threshold}. Every "
                    "input gets zero or more of the labels, also when none fits.")
        return ("Single-label: a softmax over the labels. Every input gets one label, also when "
                "none fits.")

    # --- data -------------------------------------------------------------
    @classmethod
    def examples_from_table(cls, table: Table, config: RunConfig) -> TextExamples:
        multi_label = cls.options_from(config.task.option_values()).multi_label  # type: ignore[attr-defined]
        return read_text_examples(table, config.data, multi_label)


    @classmethod
    def label_set(cls, examples: TextExamples, options: BaseModel) -> list[str]:
        multi_label = options.multi_label  # type: ignore[attr-defined]
        seen = {lab for labs in examples.labels for lab in (labs if multi_label else [labs])}
        return sorted(seen, key=natural_key)  # out-of-scope rows in train: a class

    def check_labels(self, examples: TextExamples, train_source: str) -> None:
        known = set(self.labels) | ({self.oos.label} if self.oos else set())
        for i, labs in enumerate(examples.labels):
            for label in labs if self.multi_label else [labs]:
                if label not in known:
                    raise DataError(
                        f"{examples.where(i)}: label '{label}' does not occur in the training "
                        f"data ({train_source}){did_you_mean(label, known)}; fix the label or "
                        "add training examples of it"
                    )

    def strata(self, examples: TextExamples) -> Sequence[Hashable] | None:
        return None if self.multi_label else examples.labels

    def label_ids(self, examples: TextExamples) -> np.ndarray:
        index = self.label_index
        if not self.multi_label:
            return np.array([index.get(label, OOS_ID) for label in examples.labels],
                            dtype=np.int64)
        hot = np.zeros((len(examples), len(self.labels)), dtype=np.float32)
        for row, labs in enumerate(examples.labels):
            hot[row, [index[label] for label in labs]] = 1.0
        return hot

    def tokenize(self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                 pairs: Sequence[str] | None = None) -> dict[str, list[Any]]:
        return tokenizer(list(texts), list(pairs) if pairs is not None else None,
                         truncation=True, max_length=self.max_length)

    @classmethod
    def token_lengths(cls, examples: TextExamples, tokenizer: PreTrainedTokenizerBase
                      ) -> list[int]:
        encoded = tokenizer(list(examples.texts), examples.pairs, truncation=False,
                            verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(self, examples: TextExamples, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        from datasets import Dataset

        encoded = dict(self.tokenize(tokenizer, examples.texts, examples.pairs))
        encoded["labels"] = self.label_ids(examples).tolist()
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return Dataset.from_dict(encoded)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
        if (padding := collator_for(tokenizer)) is not None:  # an exported model's
            return padding
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def model_config_kwargs(self) -> dict[str, Any]:
        kwargs = super().model_config_kwargs()
        kwargs["problem_type"] = (
            "multi_label_classification" if self.multi_label else "single_label_classification"
        )
        return kwargs

    # --- scoring ----------------------------------------------------------
    def decide(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, predicted ids or multi-hot) from logits."""
        if self.multi_label:
            probs = sigmoid(logits)
            return probs, (probs >= self.threshold).astype(np.float32)
        probs = softmax(logits)
        predicted = self.as_decided(probs.argmax(axis=-1))
        if self.oos is not None and self.oos.threshold is not None and len(logits):
            below = in_scope_scores(logits, self.oos.score, self.oos_class) < self.oos.threshold
            predicted = np.where(below, OOS_ID, predicted)
        return probs, predicted

    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        _, predicted = self.decide(logits)
        if not self.multi_label:  # out-of-scope rows are scored by the threshold, not here
            label_ids = self.as_decided(label_ids)
            keep = label_ids != OOS_ID
            label_ids, predicted = label_ids[keep], predicted[keep]
        from tunelab.evaluation import classification as scores  # sklearn: not to predict

        return scores.trainer_metrics(label_ids, predicted)

    def check_splits(self, train: TextExamples, dev: TextExamples, test: TextExamples) -> None:
        if self.oos is not None and self.oos.threshold is None and dev is test:
            raise DataError(f"{test.source}: task.out_of_scope fits its threshold on a dev file "
                            "of its own, and this run has only the test file; set data.dev")
        if self.oos is not None and self.oos.threshold is None and \
                self.oos.label not in dev.labels:
            raise DataError(f"{dev.source}: task.out_of_scope needs dev data with out-of-scope "
                            f"examples (rows labelled '{self.oos.label}') to fit its threshold;"
                            " add some to data.dev, or set task.out_of_scope.threshold")

    def fit_decision(self, model: Any, tokenizer: Any, dev: TextExamples) -> dict[str, Any]:
        """Fit the out-of-scope threshold on dev (if the task has one to fit)."""
        if self.oos is None:
            return {}
        dev_logits = self.logits_for_examples(model, tokenizer, dev)
        found = in_scope_scores(dev_logits, self.oos.score, self.oos_class)
        gold = self.as_decided(self.label_ids(dev))
        if self.oos.threshold is None:
            self.oos.threshold = fit_threshold(found, gold == OOS_ID, self.oos)
        _, predicted = self.decide(dev_logits)
        return {"score": self.oos.score, "threshold": self.oos.threshold,
                **{f"dev_{k}": round(v, 4) for k, v in oos_metrics(gold, predicted).items()}}

    def _result(self, gold: np.ndarray, predicted: np.ndarray,
                labels: list[str] | None = None) -> EvalResult:
        from tunelab.evaluation import classification as scores

        labels = labels or self.labels
        return EvalResult(
            metrics=scores.all_metrics(gold, predicted, self.multi_label),
            report=scores.per_class_report(gold, predicted, labels),
            per_class_f1=scores.per_class_f1(gold, predicted, labels, self.multi_label),
        )

    def evaluate(self, examples: TextExamples, logits: np.ndarray) -> EvalResult:
        from tunelab.evaluation import classification as scores

        gold = self.as_decided(self.label_ids(examples))
        probs, predicted = self.decide(logits)
        labels = self.labels
        # out of scope: the learned class's row and column of the report, or one more
        shown_oos = len(labels) if self.oos_class is None else self.oos_class
        if self.oos is not None:
            labels = labels if self.oos_class is not None else [*labels, self.oos.label]
            result = self._result(*(np.where(x == OOS_ID, shown_oos, x)
                                    for x in (gold, predicted)), labels)
            result.metrics.update(oos_metrics(gold, predicted))
            if self.oos.threshold is not None and (gold == OOS_ID).any():
                found = in_scope_scores(logits, self.oos.score, self.oos_class)
                best = self.as_decided(probs.argmax(-1))
                result.figures["out_of_scope.png"] = lambda fig: plot_tradeoff(
                    fig, found, gold, best, self.oos.threshold)  # type: ignore[union-attr]
        else:
            result = self._result(gold, predicted)
        shown = [np.where(x == OOS_ID, shown_oos, x) for x in (gold, predicted)]
        result.figures["confusion.png"] = lambda fig: scores.plot_confusion(
            fig, *shown, labels, self.multi_label)
        result.predictions = []
        for i in range(len(examples)):
            decoded = self._decoded(probs[i], predicted[i])
            guess = decoded["labels"] if self.multi_label else decoded["label"]
            result.predictions.append({"line": examples.lines[i], "text": examples.texts[i],
                                       "gold": examples.labels[i], **decoded,
                                       "correct": (set(guess) == set(examples.labels[i])
                                                   if self.multi_label
                                                   else guess == examples.labels[i])})
        return result

    def majority_baseline(self, train: TextExamples, examples: TextExamples) -> EvalResult:
        gold = self.label_ids(examples)
        if self.multi_label:
            common = Counter(tuple(labs) for labs in train.labels).most_common(1)[0][0]
            row = np.zeros(len(self.labels), dtype=np.float32)
            row[[self.labels.index(label) for label in common]] = 1.0
            predicted = np.tile(row, (len(examples), 1))
        else:
            common = Counter(train.labels).most_common(1)[0][0]
            predicted = np.full(len(examples), self.labels.index(common))
        return self._result(gold, predicted)

    def probe_data(self, features: np.ndarray, examples: TextExamples
                   ) -> tuple[np.ndarray, np.ndarray]:
        ids = self.label_ids(examples)
        keep = ids != OOS_ID if ids.ndim == 1 else slice(None)  # out of scope: no target
        return np.asarray(features)[keep], ids[keep]

    # --- inference --------------------------------------------------------
    def _decoded(self, probs: np.ndarray, predicted: Any = None) -> dict[str, Any]:
        probabilities = {label: round(float(p), 6) for label, p in zip(self.labels, probs,
                                                                        strict=True)}
        if self.multi_label:
            labels = [lab for lab, p in zip(self.labels, probs, strict=True) if p >= self.threshold]
            return {"labels": labels, "probabilities": probabilities}
        best = int(probs.argmax())
        label = self.oos.label if self.oos and predicted == OOS_ID else self.labels[best]
        return {"label": label, "score": round(float(probs[best]), 6),
                "probabilities": probabilities}

    def logits(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
               texts: Sequence[str], pairs: Sequence[str] | None = None,
               batch_size: int = 64, progress: bool = False) -> np.ndarray:
        encoded = self.tokenize(tokenizer, texts, pairs)
        features = as_features(encoded)
        model.eval()
        return np.stack(batched_outputs(lambda batch: model(**on_device(model, batch)).logits,
                                        for_model(self.collator(tokenizer), model), features,
                                        batch_size, progress))

    def predict(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                inputs: Sequence[Any], batch_size: int = 64, request: BaseModel | None = None
                ) -> list[dict[str, Any]]:
        labels = getattr(request, "labels", None)
        if labels:
            relabel = getattr(model, "relabel", None)
            if relabel is None:
                raise DataError("request option labels: only a zero-shot run takes labels per "
                                "request (one exported before its graph gave embeddings: "
                                "run `tunelab export` again, or use --backend torch); this "
                                f"model's labels are {', '.join(self.labels)}")
            return self.with_changes(labels=labels).predict(  # type: ignore[attr-defined]
                relabel(labels, tokenizer), tokenizer, inputs, batch_size)
        texts = [item[0] if isinstance(item, (tuple, list)) else item for item in inputs]
        pairs = ([item[1] for item in inputs]
                 if inputs and isinstance(inputs[0], (tuple, list)) else None)
        probs, predicted = self.decide(self.logits(model, tokenizer, texts, pairs, batch_size))
        return [self._decoded(row, chosen) for row, chosen in zip(probs, predicted, strict=True)]

    def logits_for_examples(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                            examples: TextExamples, batch_size: int = 64) -> np.ndarray:
        return self.logits(model, tokenizer, examples.texts, examples.pairs, batch_size,
                           progress=True)

    def prediction_labels(self, prediction: dict[str, Any]) -> list[str]:
        return [prediction["label"]] if "label" in prediction else prediction.get("labels", [])

    def feedback_labels(self) -> list[str]:
        return self.labels

    def agreement(self, a: Any, b: Any) -> float:
        if self.multi_label:
            decided = [sigmoid(x, np.float64) >= self.threshold for x in (a, b)]
            return float((decided[0] == decided[1]).all(axis=-1).mean())
        return super().agreement(a, b)
