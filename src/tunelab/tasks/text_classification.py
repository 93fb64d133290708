"""Text classification: single-label (softmax) or multi-label (sigmoid with a threshold),
on one text or a text pair."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from datasets import Dataset
from pydantic import BaseModel, Field
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from tunelab.data.examples import Examples
from tunelab.data.readers import Table
from tunelab.data.text_checks import cell_text
from tunelab.errors import DataError, did_you_mean
from tunelab.evaluation import classification as scores
from tunelab.inference import batched_outputs, on_device
from tunelab.tasks.base import EvalResult
from tunelab.tasks.labelled import LabelledOptions, LabelledTask

if TYPE_CHECKING:
    from tunelab.config import RunConfig


@dataclass
class TextExamples(Examples):
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]  # a label per example, or a list of labels when multi-label

    def inputs(self) -> list[Any]:
        if self.pairs is None:
            return list(self.texts)
        return [[a, b] for a, b in zip(self.texts, self.pairs, strict=True)]

    def plain_texts(self) -> list[str]:
        return list(self.texts)

    def to_rows(self, data: Any) -> tuple[list[str], list[list[Any]]]:
        columns = [data.text_column, *([data.text_pair_column] if self.pairs is not None
                                       else []), data.label_column]
        joined = [data.label_separator.join(lab) if isinstance(lab, list) else lab
                  for lab in self.labels]
        rows = zip(self.texts, *([self.pairs] if self.pairs is not None else []), joined,
                   strict=True)
        return [str(c) for c in columns], [list(row) for row in rows]


class TextClassificationOptions(LabelledOptions):
    multi_label: bool = False
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class TextPrediction(BaseModel):
    label: str | None = Field(default=None, description="The predicted label (single-label)")
    labels: list[str] | None = Field(default=None, description="The labels whose score passes "
                                     "the threshold (multi-label)")
    score: float | None = Field(default=None, description="Probability of `label`")
    probabilities: dict[str, float]


def _natural_key(label: str) -> tuple[int, float | str]:
    """Numeric labels sort as numbers (2 before 10), others alphabetically."""
    return (0, float(label)) if re.fullmatch(r"-?\d+(\.\d+)?", label) else (1, label)


def _column(table: Table, name: str, field: str) -> str:
    if name not in table.columns:
        hint = did_you_mean(name, table.columns) or _looks_like(table, field)
        raise DataError(
            f"{table.path}: no column '{name}' (data.{field}){hint}; "
            f"the file has columns: {', '.join(table.columns)}"
        )
    return name


def _looks_like(table: Table, field: str) -> str:
    """The column that looks like what `field` names: for text, the one with the longest
    values with spaces in them; for labels, the one with the fewest distinct values."""
    sample = table.rows[:200]
    values = {column: [str(row.get(column) or "") for row in sample] for column in table.columns}
    if field == "label_column":
        score = {c: -len(set(v)) for c, v in values.items() if v and len(set(v)) < len(v)}
    else:
        score = {c: sum(map(len, v)) / len(v) for c, v in values.items()
                 if v and sum(" " in x for x in v) > len(v) / 2}
    if not score:
        return ""
    best = max(score, key=score.__getitem__)
    return f" ('{best}' looks like it: set data.{field}: {best})"


class TextClassification(LabelledTask):
    """Single-label (softmax) or multi-label (sigmoid with a threshold), on one text or a
    text pair."""

    name = "text-classification"
    pipeline_tag = "text-classification"
    Options = TextClassificationOptions
    Prediction = TextPrediction
    peft_task_type = "SEQ_CLS"
    auto_model = AutoModelForSequenceClassification
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
        data = config.data
        multi_label = cls.options_from(config.task.option_values()).multi_label  # type: ignore[attr-defined]
        text_col = _column(table, data.text_column, "text_column")
        pair_col = (_column(table, data.text_pair_column, "text_pair_column")
                    if data.text_pair_column else None)
        label_col = _column(table, data.label_column, "label_column")
        texts, pairs, labels = [], [] if pair_col else None, []
        for i, row in enumerate(table.rows):
            texts.append(cls._text(row, text_col, table, i))
            if pairs is not None:
                pairs.append(cls._text(row, pair_col, table, i))
            labels.append(cls._labels(row.get(label_col), label_col, data.label_separator,
                                      table, i, multi_label))
        return TextExamples(str(table.path), table.lines, texts, pairs, labels)

    @staticmethod
    def _text(row: dict[str, Any], column: str, table: Table, i: int) -> str:
        text, problem = cell_text(row.get(column))
        if problem:
            raise DataError(f"{table.where(i)}: column '{column}': {problem}; fix the text or "
                            "remove the row")
        return text

    @staticmethod
    def _labels(value: Any, column: str, separator: str, table: Table, i: int,
                multi_label: bool) -> Any:
        if isinstance(value, list):
            found = [str(v).strip() for v in value]
        elif value is None:
            found = []
        else:
            whole = isinstance(value, float) and value.is_integer()  # JSON 1.0 -> label "1"
            text = str(int(value)) if whole else str(value)
            parts = [part for part in text.split(separator) if part.strip()]
            if not multi_label and len(parts) > 1:
                raise DataError(
                    f"{table.where(i)}: label '{text}' looks like {len(parts)} labels joined "
                    f"by '{separator}'; set task.multi_label=true for several labels per row, "
                    "or set data.label_separator to a character the labels do not contain")
            found = parts if multi_label else [text]
        found = [label.strip() for label in found if label.strip()]
        if not found:
            raise DataError(
                f"{table.where(i)}: empty label in column '{column}'; every row needs a label"
            )
        if not multi_label and len(found) > 1:
            raise DataError(
                f"{table.where(i)}: {len(found)} labels in column '{column}'; set "
                "task.multi_label=true for several labels per row"
            )
        return sorted(set(found)) if multi_label else found[0]

    @classmethod
    def label_set(cls, examples: TextExamples, options: BaseModel) -> list[str]:
        multi_label = options.multi_label  # type: ignore[attr-defined]
        seen = {lab for labs in examples.labels for lab in (labs if multi_label else [labs])}
        return sorted(seen, key=_natural_key)

    def check_labels(self, examples: TextExamples, train_source: str) -> None:
        known = set(self.labels)
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
            return np.array([index[label] for label in examples.labels], dtype=np.int64)
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
        encoded = dict(self.tokenize(tokenizer, examples.texts, examples.pairs))
        encoded["labels"] = self.label_ids(examples).tolist()
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return Dataset.from_dict(encoded)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
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
        tensor = torch.as_tensor(logits, dtype=torch.float32)
        if self.multi_label:
            probs = torch.sigmoid(tensor).numpy()
            return probs, (probs >= self.threshold).astype(np.float32)
        probs = torch.softmax(tensor, dim=-1).numpy()
        return probs, probs.argmax(axis=-1)

    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        _, predicted = self.decide(logits)
        return scores.trainer_metrics(label_ids, predicted)

    def _result(self, gold: np.ndarray, predicted: np.ndarray) -> EvalResult:
        return EvalResult(
            metrics=scores.all_metrics(gold, predicted, self.multi_label),
            report=scores.per_class_report(gold, predicted, self.labels),
            per_class_f1=scores.per_class_f1(gold, predicted, self.labels, self.multi_label),
        )

    def evaluate(self, examples: TextExamples, logits: np.ndarray) -> EvalResult:
        gold = self.label_ids(examples)
        probs, predicted = self.decide(logits)
        result = self._result(gold, predicted)
        result.figures["confusion.png"] = lambda fig: scores.plot_confusion(
            fig, gold, predicted, self.labels, self.multi_label)
        result.predictions = []
        for i in range(len(examples)):
            decoded = self._decoded(probs[i])
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
        return features, self.label_ids(examples)

    # --- inference --------------------------------------------------------
    def _decoded(self, probs: np.ndarray) -> dict[str, Any]:
        probabilities = {label: round(float(p), 6) for label, p in zip(self.labels, probs,
                                                                        strict=True)}
        if self.multi_label:
            labels = [lab for lab, p in zip(self.labels, probs, strict=True) if p >= self.threshold]
            return {"labels": labels, "probabilities": probabilities}
        best = int(probs.argmax())
        return {"label": self.labels[best], "score": round(float(probs[best]), 6),
                "probabilities": probabilities}

    def logits(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
               texts: Sequence[str], pairs: Sequence[str] | None = None,
               batch_size: int = 64, progress: bool = False) -> np.ndarray:
        encoded = self.tokenize(tokenizer, texts, pairs)
        features = [dict(zip(encoded.keys(), values, strict=True))
                    for values in zip(*encoded.values(), strict=True)]
        model.eval()
        return np.stack(batched_outputs(lambda batch: model(**on_device(model, batch)).logits,
                                        self.collator(tokenizer), features, batch_size, progress))

    def predict(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                inputs: Sequence[Any], batch_size: int = 64, request: BaseModel | None = None
                ) -> list[dict[str, Any]]:
        texts = [item[0] if isinstance(item, (tuple, list)) else item for item in inputs]
        pairs = ([item[1] for item in inputs]
                 if inputs and isinstance(inputs[0], (tuple, list)) else None)
        probs, _ = self.decide(self.logits(model, tokenizer, texts, pairs, batch_size))
        return [self._decoded(row) for row in probs]

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
            decided = [torch.sigmoid(torch.as_tensor(x, dtype=torch.float64)).numpy()
                       >= self.threshold for x in (a, b)]
            return float((decided[0] == decided[1]).all(axis=-1).mean())
        return super().agreement(a, b)
