"""Few-shot classification in the SetFit manner (Tunstall et al., 2022), trained by the
`setfit` package: contrastive fine-tuning of the sentence encoder on pairs drawn from the
few examples (same label: similar, different labels: not), then a logistic-regression head
on the tuned embeddings. With 8 examples a class this learns where fine-tuning a new head
with cross-entropy has too few updates to start from.

The result is converted into tunelab's sentence-embedding classifier (the tuned encoder and
the head as one linear layer), so that it reports, calibrates, serves and exports like any
run; the saved folder is the layout SetFit itself uses."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import ConfigDict, Field

from tunelab.methods.base import Method, Trained, TrainingPlan, single_label_text
from tunelab.methods.embedding_classifier import EmbeddingClassifier, encoder_of
from tunelab.methods.label_sentences import ZeroShotOptions, check_descriptions, label_sentences
from tunelab.tasks.base import Task


class FewShotOptions(ZeroShotOptions):
    """Each label's sentences (zero-shot's `templates` and `descriptions`) join its
    examples, `label_examples` times, as setfit's `get_templated_dataset` does. 8 was chosen
    on dev (bench/few_shot.py: mean dev accuracy over SST-2 and AG News at 8 examples a
    label, 3 seeds: 0.785 against 0.773 with 2 and 0.734 with none)."""

    model_config = ConfigDict(extra="forbid")
    label_examples: int = Field(default=8, ge=0, description="Copies of each label's "
                                "sentences added to its examples (0: none)")
    # SetFit's defaults from its paper: 20 pair iterations an example, one epoch
    iterations: int = Field(default=20, ge=1, description="Pairs drawn per example, x2")
    epochs: int = Field(default=1, ge=1, description="Passes over the pairs")
    batch_size: int = Field(default=16, ge=2)
    body_lr: float = Field(default=2e-5, gt=0, description="The encoder's learning rate")
    max_steps: int = Field(default=2000, ge=1,
                           description="At most this many contrastive steps (a CPU bound)")


class FewShot(Method):
    """`method: few-shot`; text classification with one label per text."""

    Options = FewShotOptions
    default_lr = 2e-5
    mergeable: ClassVar[bool] = False
    keeps_best_checkpoint: ClassVar[bool] = False
    uses_task_head: ClassVar[bool] = False

    def check(self, model: Any, task: Task) -> None:
        single_label_text(task, "few-shot")
        check_descriptions(self.options, task)  # type: ignore[arg-type]

    def fit(self, model: Any, task: Task, tokenizer: Any, train: Any, dev: Any,
            plan: TrainingPlan, run_dir: Path) -> Trained:
        from datasets import Dataset
        from setfit import SetFitModel, TrainingArguments
        from setfit import Trainer as SetFitTrainer

        options: FewShotOptions = self.options  # type: ignore[assignment]
        self.labels = list(task.labels)  # type: ignore[attr-defined]
        source = model.config._name_or_path
        with offline():
            setfit = SetFitModel.from_pretrained(source, local_files_only=True,
                                                 labels=self.labels)
        texts = [text if isinstance(text, str) else " ".join(text) for text in train.inputs()]
        ids = [int(i) for i in task.label_ids(train)]  # type: ignore[attr-defined]
        for label, sentences in enumerate(label_sentences(self.labels, options)):
            if named(self.labels[label], options):  # "This text is about 3." says nothing
                texts += sentences * options.label_examples
                ids += [label] * (len(sentences) * options.label_examples)
        # setfit trains to max_steps whatever the pairs: set only as a cap
        steps = contrastive_steps(len(texts), options)
        args = TrainingArguments(
            output_dir=str(run_dir / "checkpoints"), batch_size=options.batch_size,
            num_epochs=options.epochs, num_iterations=options.iterations,
            body_learning_rate=options.body_lr,
            max_steps=steps if steps == options.max_steps else -1,
            max_length=task.max_length, seed=torch.initial_seed() % 2**31,
            report_to="none", save_strategy="no", show_progress_bar=False,
            logging_steps=max(1, steps // 20))
        trainer = SetFitTrainer(model=setfit, args=args, train_dataset=Dataset.from_dict(
            {"text": texts, "label": ids}))
        level = logging.getLogger("setfit").level
        logging.getLogger("setfit").setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings(), offline():  # pin_memory's default, on a CPU
                warnings.filterwarnings("ignore", message=".*pin_memory.*")
                trainer.train()
        finally:
            logging.getLogger("setfit").setLevel(level)
        state = trainer.st_trainer.state if hasattr(trainer, "st_trainer") else None
        classifier = to_embedding_classifier(setfit, len(self.labels))
        return Trained(classifier, steps=state.global_step if state else 0,
                       epochs=float(options.epochs),
                       log_history=list(state.log_history) if state else [])

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(directory, self.labels)

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        return EmbeddingClassifier.from_pretrained(directory)


def named(label: str, options: FewShotOptions) -> bool:
    """Whether a label has words to make sentences of: its description, or a name with a
    letter in it (not a code such as 0 or 3)."""
    return label in options.descriptions or any(c.isalpha() for c in label)


def contrastive_steps(examples: int, options: FewShotOptions) -> int:
    """The steps the pairs take (setfit draws `iterations` positive and as many negative
    pairs per example), at most `options.max_steps`."""
    pairs = 2 * options.iterations * examples
    return min(math.ceil(pairs / options.batch_size) * options.epochs, options.max_steps)


@contextmanager
def offline() -> Iterator[None]:
    """The model is local; setfit must not look for it, or for its card, on the hub."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def to_embedding_classifier(setfit: Any, labels: int) -> EmbeddingClassifier:
    """The tuned body's encoder with the logistic regression as one linear layer. A
    two-class regression has one row (w, b): its probabilities are the softmax of (0, w.x+b)."""
    body = setfit.model_body
    normalize = any(type(module).__name__ == "Normalize" for module in body)
    encoder = encoder_of(body[0].auto_model)
    classifier = EmbeddingClassifier(encoder, labels, normalize)
    head = setfit.model_head
    weight = np.zeros((labels, encoder.config.hidden_size), dtype=np.float32)
    bias = np.full(labels, -30.0, dtype=np.float32)  # a label no example had: never
    rows = [int(c) for c in head.classes_]
    if len(rows) == 2 and head.coef_.shape[0] == 1:
        weight[rows[1]], bias[rows[1]], bias[rows[0]] = head.coef_[0], head.intercept_[0], 0
    else:
        weight[rows], bias[rows] = head.coef_, head.intercept_
    with torch.no_grad():
        classifier.classifier.weight.copy_(torch.from_numpy(weight))
        classifier.classifier.bias.copy_(torch.from_numpy(bias))
    return classifier.eval()
