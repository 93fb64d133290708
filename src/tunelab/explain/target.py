"""What an explanation explains: the text's words, the label, and for NER the entities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.errors import DataError
from tunelab.inference import sigmoid, softmax, takes_numpy
from tunelab.tasks.alignment import words_with_offsets

METHODS = ("auto", "integrated-gradients", "occlusion")


@dataclass
class Words:
    text: str
    words: list[str]
    spans: list[tuple[int, int]]

    @classmethod
    def of(cls, text: str) -> Words:
        words, spans = words_with_offsets(text)
        if not words:
            raise DataError("text: no words to explain; give a non-empty text")
        return cls(text, words, spans)

    def without(self, removed: int | set[int]) -> str:
        """The text with a word (or a set of words) taken out, the rest as it was."""
        gone = {removed} if isinstance(removed, int) else removed
        out, at = [], 0
        for i, (start, end) in enumerate(self.spans):
            if i in gone:
                out.append(self.text[at:start])
                at = end
        return "".join(out) + self.text[at:]

    def scored(self, scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"text": word, "start": start, "end": end, "score": round(float(s), 6)}
                for word, (start, end), s in zip(self.words, self.spans, scores, strict=True)]


@dataclass
class EntityTarget:
    """A predicted entity: its words (first..end, exclusive) and their tag ids."""

    type: str
    first: int
    end: int
    tag_ids: list[int]


def label_index(task: Any, label: str) -> int:
    labels = list(task.labels)
    if label not in labels:
        raise DataError(f"label '{label}' is not one of the model's labels: "
                        f"{', '.join(labels)}")
    return labels.index(label)


def class_probs(task: Any, logits: Any) -> np.ndarray:
    """Probabilities as the task decides with them: sigmoid for multi-label, else softmax."""
    return sigmoid(logits) if getattr(task, "multi_label", False) else softmax(logits)


def input_embeddings(model: Any) -> Any:
    """The token embedding layer Integrated Gradients walks along, if the model has one."""
    if takes_numpy(model):
        return None
    import torch

    for owner in (model, getattr(model, "encoder", None)):
        getter = getattr(owner, "get_input_embeddings", None)
        if callable(getter):
            layer = getter()
            if isinstance(layer, torch.nn.Module):
                return layer
    return None


def pick_method(method: str, model: Any) -> str:
    if method not in METHODS:
        raise DataError(f"method '{method}': choose one of {', '.join(METHODS)}")
    torch_model = input_embeddings(model) is not None
    if method == "integrated-gradients" and not torch_model:
        raise DataError("method integrated-gradients needs the PyTorch model (--backend "
                        "torch); exported models are explained by occlusion")
    if method == "auto":
        return "integrated-gradients" if torch_model else "occlusion"
    return method
