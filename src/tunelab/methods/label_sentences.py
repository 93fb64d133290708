"""Labels as sentences, shared by zero-shot and few-shot, without torch: the options that
word them, the sentences themselves, and labels per request on an exported zero-shot model.

A zero-shot model is a sentence-embedding classifier whose rows are its labels' unit
embeddings times a scale. Its ONNX export also outputs the text's unit embedding, so new
labels become new rows in numpy: the export embeds their sentences, and the scale is the
saved rows' length (the calibration folded into it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelab.errors import ConfigError
from tunelab.inference import as_features, batched_outputs
from tunelab.json_tokenizer import collator_for
from tunelab.methods.embedding_layout import HEAD, SETTINGS

RELABEL_CACHE = 32


class ZeroShotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates: list[str] = Field(default_factory=lambda: ["This text is about {label}."],
                                 min_length=1, description="Sentences that name a label; "
                                 "a label's embedding is the mean over them")
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="Words for a label, used in place of its name "
        "(labels such as 0 and 1, or terse codes, need them)")

    @field_validator("templates")
    @classmethod
    def _names_the_label(cls, templates: list[str]) -> list[str]:
        for template in templates:
            if "{label}" not in template:
                raise ValueError(f"'{template}' has no {{label}} placeholder; write it as "
                                 "'This text is about {label}.'")
        return templates


def check_descriptions(options: ZeroShotOptions, task: Any) -> None:
    labels = list(task.labels)
    unknown = sorted(set(options.descriptions) - set(labels))
    if unknown:
        raise ConfigError(f"method.descriptions: {', '.join(unknown)} are not labels of "
                          f"this run; the labels are {', '.join(labels)}")


def label_sentences(labels: list[str], options: ZeroShotOptions) -> list[list[str]]:
    """Each label's sentences: its description, else its name as words (card_arrival: card
    arrival), in every template."""
    def words(label: str) -> str:
        return options.descriptions.get(label, label.replace("_", " ").strip())
    return [[template.format(label=words(label)) for template in options.templates]
            for label in labels]


def label_rows(embed: Callable[..., Any], pad: Any, tokenizer: Any, labels: list[str],
               options: ZeroShotOptions) -> np.ndarray:
    """One unit vector per label: the mean of its sentences' unit embeddings, by `embed`
    (a PyTorch or an exported model's) over batches padded by `pad`."""
    sentences = label_sentences(labels, options)
    flat = [s for group in sentences for s in group]
    features = as_features(tokenizer(flat, truncation=True))
    embedded = np.stack(batched_outputs(lambda batch: embed(**batch), pad, features))
    rows = embedded.reshape(len(labels), len(options.templates), -1).mean(1)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class LabelHeads:
    """A model over labels given per request, built by `build(labels, tokenizer)`; the heads
    of the last RELABEL_CACHE label lists are kept, as clients repeat theirs and embedding
    the sentences is most of a request's cost."""

    def __init__(self, build: Callable[[list[str], Any], Any]) -> None:
        self.build = build
        self.heads: dict[tuple[str, ...], Any] = {}

    def __call__(self, labels: list[str], tokenizer: Any) -> Any:
        key = tuple(labels)
        if key not in self.heads:
            if len(self.heads) >= RELABEL_CACHE:
                self.heads.pop(next(iter(self.heads)))
            self.heads[key] = self.build(labels, tokenizer)
        return self.heads[key]


class ExportedLabelHead:
    """An exported embedding model with other label rows: logits = embedding @ rows.T."""

    takes_numpy = True

    def __init__(self, model: Any, rows: np.ndarray) -> None:
        self.model, self.rows = model, rows

    def eval(self) -> ExportedLabelHead:
        return self

    def __call__(self, **batch: Any) -> SimpleNamespace:
        return SimpleNamespace(logits=self.model.embed(**batch) @ self.rows.T)


def take_labels_per_request(model: Any, model_dir: Path) -> None:
    """Give an exported zero-shot model `relabel`, as the PyTorch one has, when its graph
    outputs embeddings (exports made before it did are left without)."""
    settings_file = model_dir / SETTINGS
    if not settings_file.is_file() or not getattr(model, "embeds", False):
        return
    settings = json.loads(settings_file.read_text())
    if "zero_shot" not in settings:
        return
    from safetensors.numpy import load_file

    options = ZeroShotOptions(**settings["zero_shot"])
    weight = load_file(model_dir / HEAD)["weight"]
    scale = float(np.linalg.norm(weight, axis=1).mean())  # the calibrated scale

    def build(labels: list[str], tokenizer: Any) -> ExportedLabelHead:
        pad = collator_for(tokenizer)
        if pad is None:  # transformers' own tokenizer (a folder without tokenizer.json)
            from transformers import DataCollatorWithPadding

            pad = DataCollatorWithPadding(tokenizer, return_tensors="np")
        rows = label_rows(model.embed, pad, tokenizer, labels, options)
        return ExportedLabelHead(model, (scale * rows).astype(np.float32))

    model.relabel = LabelHeads(build)
