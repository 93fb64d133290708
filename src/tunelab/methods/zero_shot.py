"""Zero-shot classification from label names: each label becomes a sentence ("This text is
about {label}."), and a text gets the label whose sentence embedding is nearest (cosine).
Nothing trains. The packaged encoder, all-MiniLM-L6-v2, was trained for exactly this kind of
sentence similarity.

The labels' unit embeddings, times a scale, are the rows of a linear layer over the text's
unit embedding, so the model is a sentence-embedding classifier like few-shot's: it reports,
serves and exports as every run does. With a dev file the scale is calibrated on it (the
run's `evaluation.calibrate`, a temperature), else it stays at SCALE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from tunelab.methods.base import Method, Trained, TrainingPlan, single_label_text
from tunelab.methods.embedding_classifier import SETTINGS, EmbeddingClassifier, encoder_of
from tunelab.methods.label_sentences import (
    LabelHeads,
    ZeroShotOptions,
    check_descriptions,
    label_rows,
)
from tunelab.tasks.base import Task

SCALE = 20.0  # cosine x 20: a similarity gap of 0.05 is odds of e to 1


class ZeroShot(Method):
    """`method: zero-shot`; single-label text classification, with or without training
    data (labels in `task.labels`)."""

    Options = ZeroShotOptions
    mergeable: ClassVar[bool] = False
    keeps_best_checkpoint: ClassVar[bool] = False
    uses_task_head: ClassVar[bool] = False
    needs_training_data: ClassVar[bool] = False

    def check(self, model: Any, task: Task) -> None:
        single_label_text(task, "zero-shot")
        check_descriptions(self.options, task)  # type: ignore[arg-type]

    def fit(self, model: Any, task: Task, tokenizer: Any, train: Any, dev: Any,
            plan: TrainingPlan, run_dir: Path) -> Trained:
        self.labels = list(task.labels)  # type: ignore[attr-defined]
        classifier = EmbeddingClassifier(encoder_of(model), len(self.labels)).eval()
        classifier.requires_grad_(False)  # nothing trains
        with torch.no_grad():
            classifier.classifier.weight.copy_(
                SCALE * label_embeddings(classifier, tokenizer, self.labels,
                                         self.options))  # type: ignore[arg-type]
            classifier.classifier.bias.zero_()
        return Trained(classifier)

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(directory, self.labels, zero_shot=self.options.model_dump())

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        """The model, able to classify into labels given per request (`relabel`)."""
        model = EmbeddingClassifier.from_pretrained(directory)
        settings = json.loads((directory / SETTINGS).read_text())
        options = ZeroShotOptions(**settings.get("zero_shot", {}))
        # the calibrated scale: the temperature is folded into the rows' length
        scale = float(model.classifier.weight.detach().norm(dim=1).mean())

        def relabel(labels: list[str], tokenizer: Any) -> EmbeddingClassifier:
            other = EmbeddingClassifier(model.encoder, len(labels), model.normalize).eval()
            with torch.no_grad():
                other.classifier.weight.copy_(
                    scale * label_embeddings(model, tokenizer, labels, options))
                other.classifier.bias.zero_()
            return other

        model.relabel = LabelHeads(relabel)
        return model


def label_embeddings(model: EmbeddingClassifier, tokenizer: Any, labels: list[str],
                     options: ZeroShotOptions) -> torch.Tensor:
    """One unit vector per label: the mean of its sentences' unit embeddings."""
    from transformers import DataCollatorWithPadding

    return torch.from_numpy(label_rows(model.embed, DataCollatorWithPadding(tokenizer),
                                       tokenizer, labels, options))
