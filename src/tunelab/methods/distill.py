"""Knowledge distillation (Hinton et al., 2015) into a smaller copy of a teacher run.

The student starts as the teacher's own model (adapters merged), cut down by importance
measured on this run's training batches (compress/prune.py): `layers` keeps that many
encoder layers, `ffn_keep` that fraction of each layer's feed-forward neurons. It then
trains on

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(gold)

where _T is a softmax at temperature T. The teacher runs alongside the student on each
batch, so its logits need no storing. Examples without a gold label (label -100) train
on the teacher's distribution alone. With neither option set this is a plain
distillation into a same-size copy, and with alpha 0 a recovery fine-tune.

The student saves as a plain transformers model with a smaller config."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers import PreTrainedModel

from tunelab import registry
from tunelab.compress import prune
from tunelab.errors import ConfigError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.tasks.base import Task

IMPORTANCE_EXAMPLES = 256


class DistillOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teacher: Path = Field(description="The teacher: a tunelab run of the same task and labels")
    layers: int | None = Field(default=None, ge=1, description="Encoder layers the student "
                               "keeps (the most important); None: all")
    ffn_keep: float | None = Field(default=None, gt=0.0, lt=1.0, description="Share of each "
                                   "layer's feed-forward neurons kept; None: all")
    temperature: float = Field(default=2.0, gt=0.0)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Weight of the teacher's "
                         "distribution; the rest is on the gold labels")
    unlabelled: Path | None = Field(default=None, description="Texts without labels, one "
                                    "per line, that only the teacher labels")


class Distilled(nn.Module):
    """The student, trained against the teacher. Only the student's weights train; the
    Trainer sees the student's logits, so evaluation and early stopping are unchanged."""

    def __init__(self, student: PreTrainedModel, teacher: PreTrainedModel,
                 options: DistillOptions) -> None:
        super().__init__()
        self.student = student
        self.teacher = [teacher.eval().requires_grad_(False)]  # a list: not a submodule
        self.options = options
        self.config = student.config
        self.accepts_loss_kwargs = False  # the Trainer must not pass num_items_in_batch

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> Any:
        # named inputs: the Trainer keeps the dataset columns that forward names
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids}
        batch = {key: value for key, value in given.items() if value is not None}
        output = self.student(**batch)
        if labels is None:
            return output
        with torch.no_grad():
            teacher_logits = self.teacher[0](**batch).logits
        output.loss = self.loss(output.logits, teacher_logits, labels, attention_mask)
        return output

    def loss(self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             mask: torch.Tensor | None) -> torch.Tensor:
        t, alpha = self.options.temperature, self.options.alpha
        soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                        log_target=True, reduction="none").sum(-1)
        if soft.dim() == 2 and mask is not None:  # token classification: the text's tokens
            soft = soft[mask.bool()]
        loss = alpha * t * t * soft.mean()
        gold = labels != -100
        if alpha < 1 and gold.any():
            loss = loss + (1 - alpha) * F.cross_entropy(logits[gold], labels[gold])
        return loss

    def gradient_checkpointing_enable(self, **options: Any) -> None:
        self.student.gradient_checkpointing_enable(**options)


def read_lines(path: Path) -> list[str]:
    from tunelab.data.readers import read_text

    if not Path(path).is_file():
        raise ConfigError(f"method.unlabelled: {path}: file not found; give a text file "
                          "with one text per line")
    texts = [line.strip() for line in read_text(Path(path)).splitlines() if line.strip()]
    if not texts:
        raise ConfigError(f"method.unlabelled: {path}: no texts; put one text per line")
    return texts


def unlabelled_set(task: Task, tokenizer: Any, texts: list[str]) -> Any:
    """Encoded texts with every label -100: the gold loss skips them, the teacher's does
    not. NER texts are split into words at spaces."""
    from datasets import Dataset

    if task.name == "token-classification":
        from tunelab.tasks.token_classification import encode_windows

        words = [text.split() for text in texts]
        windows = encode_windows(tokenizer, words, task.max_length,
                                 [[-100] * len(w) for w in words])
        columns = {key: [f[key] for f in windows.features] for key in windows.features[0]}
    else:
        columns = dict(task.tokenize(tokenizer, texts))  # type: ignore[attr-defined]
        columns["labels"] = [-100] * len(texts)
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return Dataset.from_dict(columns)


class Distill(Method):
    Options: ClassVar[type[BaseModel]] = DistillOptions
    default_lr = 1e-4  # a student cut from a fine-tuned model moves further than one fine-tuned
    mergeable = False  # the teacher reads the lower layers too: no frozen-layer cache
    uses_task_head = False  # the student keeps the teacher's head

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options)
        self.batches: list[dict[str, torch.Tensor]] = []
        self.summary: dict[str, Any] = {}
        self._teacher: Any = None

    @property
    def opts(self) -> DistillOptions:
        assert isinstance(self.options, DistillOptions)
        return self.options

    def teacher(self) -> Any:
        """(the teacher run loaded, its plain model); loaded once, for check and prepare."""
        if self._teacher is None:
            self._teacher = self._load_teacher()
        return self._teacher

    def _load_teacher(self) -> Any:
        from tunelab.predictor import Predictor

        loaded = Predictor(self.opts.teacher, backend="torch")
        plain = registry.methods.get(loaded.meta["method"]).for_export(loaded.model)
        if plain is None:
            raise ConfigError(f"method.teacher: {self.opts.teacher} was trained with method "
                              f"'{loaded.meta['method']}', which has no plain model to "
                              "distil from; use a full, LoRA, IA3, AdaLoRA or adapter run")
        return loaded, plain

    def check(self, model: PreTrainedModel, task: Task) -> None:
        if not (Path(self.opts.teacher) / "model").is_dir():
            raise ConfigError(f"method.teacher: {self.opts.teacher} is not a tunelab run "
                              "(no model/ folder); give a run directory such as runs/demo")
        loaded, plain = self.teacher()
        if getattr(task, "multi_label", False):
            raise ConfigError("method: distill takes single-label classification and token "
                              "classification; this run is multi-label")
        mine, theirs = getattr(task, "labels", None), getattr(loaded.task, "labels", None)
        if loaded.task.name != task.name or mine != theirs:
            raise ConfigError(
                f"method.teacher: {self.opts.teacher} is a {loaded.task.name} run with labels "
                f"{theirs}; this run's data is {task.name} with labels {mine}; distil with "
                "data of the teacher's task and labels")
        if self.opts.unlabelled is not None:
            read_lines(self.opts.unlabelled)
        layers = len(prune.encoder_layers(plain))
        if self.opts.layers is not None and self.opts.layers > layers:
            raise ConfigError(f"method.layers: {self.opts.layers} is more than the teacher's "
                              f"{layers} layers; give at most {layers}")

    def use_data(self, task: Task, tokenizer: Any, train_set: Any) -> Any:
        if self.opts.layers is not None or self.opts.ffn_keep is not None:  # importance
            rows = [train_set[i] for i in range(min(IMPORTANCE_EXAMPLES, len(train_set)))]
            collate = task.collator(tokenizer)
            self.batches = [collate(rows[i:i + 32]) for i in range(0, len(rows), 32)]
        if self.opts.unlabelled is None:
            return train_set
        from datasets import concatenate_datasets

        extra = unlabelled_set(task, tokenizer, read_lines(self.opts.unlabelled))
        print(f"distill: {len(extra)} unlabelled examples from {self.opts.unlabelled}, "
              "labelled by the teacher alone", file=sys.stderr, flush=True)
        extra = extra.select_columns(train_set.column_names).cast(train_set.features)
        return concatenate_datasets([train_set, extra])

    def prepare(self, model: PreTrainedModel, task: Task, plan: TrainingPlan) -> Any:
        _, teacher = self.teacher()
        student = copy.deepcopy(teacher)
        batches = [{k: v for k, v in b.items() if k != "length"} for b in self.batches]
        if self.opts.layers is not None and batches:
            rises = prune.layer_importance(student, batches)
            self.summary["layers_kept"] = prune.keep_layers(student, self.opts.layers, rises)
        if self.opts.ffn_keep is not None and batches:
            scores = prune.neuron_importance(student, batches)
            self.summary["intermediate_size"] = prune.prune_neurons(
                student, self.opts.ffn_keep, scores)
        if self.summary:
            print(f"distill: the student keeps {self.summary}", file=sys.stderr, flush=True)
        student.train()
        return Distilled(student.requires_grad_(True), teacher, self.opts)

    def save(self, model: Any, directory: Path) -> None:
        self.for_export(model).save_pretrained(directory)

    @classmethod
    def for_export(cls, model: Any) -> PreTrainedModel | None:
        return model.student if isinstance(model, Distilled) else model
