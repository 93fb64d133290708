"""A task and a method that live outside tunelab and reach it only through entry points
(see test_extension.py): text scoring (regression to a number) and BitFit (bias terms and
the head train). Neither is a classification: they test that the core is not shaped
around one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from pydantic import BaseModel, ConfigDict, Field
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    TrainerCallback,
)

from tunelab.data.examples import Examples
from tunelab.data.text_checks import cell_text
from tunelab.errors import DataError
from tunelab.inference import batched_outputs, on_device
from tunelab.methods.base import Method, Trained, TrainingPlan
from tunelab.models import pretrained_config
from tunelab.tasks.base import EvalResult, Task


@dataclass
class ScoredTexts(Examples):
    texts: list[str]
    values: list[float]

    def inputs(self) -> list[Any]:
        return list(self.texts)

    def plain_texts(self) -> list[str]:
        return list(self.texts)


class ScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tolerance: float = Field(default=0.25, gt=0, description="A prediction this close counts "
                             "as correct")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: int | None = Field(default=None, ge=0, le=6, description="Round the score")


class ScorePrediction(BaseModel):
    value: float


class TextScore(Task):
    name = "text-score"
    Options = ScoreOptions
    Request = ScoreRequest
    Prediction = ScorePrediction
    peft_task_type = "SEQ_CLS"
    auto_model = AutoModelForSequenceClassification
    default_metric = "neg_mse"
    headline_metrics = ("neg_mse", "within_tolerance")
    trainer_metrics = ("neg_mse", "within_tolerance")
    report_kind = "Errors"

    @classmethod
    def examples_from_table(cls, table: Any, config: Any) -> ScoredTexts:
        texts, values = [], []
        for i, row in enumerate(table.rows):
            text, problem = cell_text(row.get(config.data.text_column))
            if problem:
                raise DataError(f"{table.where(i)}: {problem}")
            try:
                values.append(float(row[config.data.label_column]))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{table.where(i)}: the score must be a number") from None
            texts.append(text)
        return ScoredTexts(str(table.path), table.lines, texts, values)

    def encode(self, examples: ScoredTexts, tokenizer: Any) -> Dataset:
        encoded = dict(tokenizer(examples.texts, truncation=True, max_length=self.max_length))
        encoded["labels"] = [float(v) for v in examples.values]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return Dataset.from_dict(encoded)

    def collator(self, tokenizer: Any) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(tokenizer)

    def build_model(self, resolved: Any, dropout: float | None = None) -> Any:
        config = pretrained_config(resolved, dropout, num_labels=1, problem_type="regression")
        return self.auto_model.from_pretrained(resolved.source, config=config,
                                               ignore_mismatched_sizes=True,
                                               **resolved.from_pretrained_kwargs)

    def _scores(self, gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        error = np.abs(predicted.reshape(-1) - gold.reshape(-1))
        return {"neg_mse": float(-(error ** 2).mean()),
                "within_tolerance": float((error <= self.options.tolerance).mean())}

    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        return self._scores(label_ids, logits)

    def evaluate(self, examples: ScoredTexts, logits: np.ndarray) -> EvalResult:
        predicted = logits.reshape(-1)
        metrics = self._scores(np.asarray(examples.values), predicted)
        result = EvalResult(metrics=metrics, report=f"mean absolute error "
                            f"{np.abs(predicted - examples.values).mean():.4f}")
        result.predictions = [
            {"line": line, "text": text, "gold": gold, "value": float(value),
             "correct": bool(abs(value - gold) <= self.options.tolerance)}
            for line, text, gold, value in zip(examples.lines, examples.texts, examples.values,
                                               predicted, strict=True)]
        return result

    def agreement(self, a: Any, b: Any) -> float:
        return float((np.abs(np.asarray(a) - np.asarray(b)) <= 0.05).mean())

    def logits_for_examples(self, model: Any, tokenizer: Any, examples: ScoredTexts,
                            batch_size: int = 64) -> np.ndarray:
        return self._values(model, tokenizer, examples.texts, batch_size)

    def _values(self, model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int
                ) -> np.ndarray:
        encoded = tokenizer(list(texts), truncation=True, max_length=self.max_length)
        features = [dict(zip(encoded.keys(), values, strict=True))
                    for values in zip(*encoded.values(), strict=True)]
        model.eval()
        return np.stack(batched_outputs(lambda batch: model(**on_device(model, batch)).logits,
                                        self.collator(tokenizer), features, batch_size))

    def predict(self, model: Any, tokenizer: Any, inputs: Sequence[Any], batch_size: int = 64,
                request: BaseModel | None = None) -> list[dict[str, Any]]:
        digits = getattr(request, "digits", None)
        values = self._values(model, tokenizer, list(inputs), batch_size).reshape(-1)
        return [{"value": round(float(v), digits) if digits is not None else float(v)}
                for v in values]

    def head_description(self) -> str:
        return "A single number per text (regression, mean squared error)."


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


class BitFit(Method):
    """BitFit (Ben Zaken et al., 2022): only the bias terms and the task head train."""

    default_lr = 1e-3

    def prepare(self, model: Any, task: Task, plan: TrainingPlan) -> Any:
        self.plan = plan
        head = task.head_modules(model)
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.endswith(".bias") or name.split(".")[0] in head
        return model

    def callbacks(self, model: Any, plan: TrainingPlan) -> list[TrainerCallback]:
        self.counter = CountSteps()
        return [self.counter]

    def save(self, model: Any, directory: Path) -> None:
        super().save(model, directory)
        (directory / "bitfit.json").write_text(json.dumps(
            {"planned_steps": self.plan.total_steps, "optimizer_steps": self.counter.steps,
             "steps_per_epoch": self.plan.steps_per_epoch}))


class LeastSquaresHead(Method):
    """No gradient steps: the encoder stays as pretrained and the regression head is solved
    in closed form on the pooled features (a method with its own `fit`, no Trainer)."""

    mergeable = True

    def fit(self, model: Any, task: Task, tokenizer: Any, train: Any, dev: Any,
            plan: TrainingPlan, run_dir: Path) -> Trained:
        encoder = model.get_submodule(model.base_model_prefix).eval()
        batch = tokenizer(list(train.texts), padding=True, truncation=True,
                          max_length=task.max_length, return_tensors="pt")
        with torch.no_grad():
            features = encoder(**batch).pooler_output
        design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
        target = torch.tensor(train.values, dtype=design.dtype).unsqueeze(1)
        solution = torch.linalg.lstsq(design, target, driver="gelsd").solution
        with torch.no_grad():
            model.classifier.weight.copy_(solution[:-1].T)
            model.classifier.bias.copy_(solution[-1])
        return Trained(model, steps=0, epochs=1.0,
                       log_history=[{"epoch": 1.0, "step": 0, "fitted_examples": len(train)}])
