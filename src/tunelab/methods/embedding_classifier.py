"""A sentence-embedding classifier: the encoder, mean pooling over the tokens, optionally
unit length, then one linear layer. It is the model of the methods that work on sentence
embeddings rather than the encoder's [CLS] head (zero-shot label matching, few-shot SetFit).

Saved as a sentence-transformers folder (`SentenceTransformer(folder)` loads the encoder
with its pooling) plus `classifier.safetensors`, the linear layer: the layout SetFit uses.
It serves, calibrates and exports through tunelab's usual paths, as the forward pass takes
the tokenizer's inputs and returns logits like a transformers classification model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from tunelab.methods.embedding_layout import HEAD, SETTINGS


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class EmbeddingClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, labels: int, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.classifier = nn.Linear(encoder.config.hidden_size, labels)

    @property
    def config(self) -> Any:  # what export reads (heads, hidden size, label names)
        return self.encoder.config

    def set_attn_implementation(self, implementation: str) -> None:
        self.encoder.set_attn_implementation(implementation)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              **extra).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **_: Any) -> SequenceClassifierOutput:
        logits = self.classifier(self.embed(input_ids, attention_mask, token_type_ids))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: Path, labels: list[str],
                        **settings: Any) -> None:
        directory = Path(directory)
        self.encoder.config.id2label = dict(enumerate(labels))
        self.encoder.config.label2id = {label: i for i, label in enumerate(labels)}
        self.encoder.save_pretrained(directory)
        save_file({"weight": self.classifier.weight.detach().contiguous(),
                   "bias": self.classifier.bias.detach().contiguous()}, str(directory / HEAD))
        (directory / SETTINGS).write_text(json.dumps({"pooling": "mean",
                                                      "normalize": self.normalize, **settings}))
        _sentence_transformers_files(directory, self.encoder.config.hidden_size,
                                     self.normalize)

    @classmethod
    def from_pretrained(cls, directory: Path) -> EmbeddingClassifier:
        directory = Path(directory)
        settings = json.loads((directory / SETTINGS).read_text())
        head = load_file(directory / HEAD)
        encoder = AutoModel.from_pretrained(directory, local_files_only=True)
        model = cls(encoder, head["weight"].shape[0], settings["normalize"])
        model.classifier.load_state_dict(head)
        return model.eval()


def encoder_of(model: nn.Module) -> nn.Module:
    """The bare encoder inside a transformers task model (BertModel in a BERT classifier).
    Its [CLS] pooler stays, unused, so that the saved folder loads without new weights."""
    return getattr(model, "base_model", model)


def _sentence_transformers_files(directory: Path, size: int, normalize: bool) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type":
                "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type":
                "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    (directory / "modules.json").write_text(json.dumps(modules, indent=2))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": size, "pooling_mode_mean_tokens": True}, indent=2))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256,
                                                                     "do_lower_case": False}))


def loading_guide(model_path: str) -> str:
    """The model card's code for using the model without tunelab."""
    return ("```python\nfrom safetensors.torch import load_file\n"
            "from sentence_transformers import SentenceTransformer\n\n"
            f'body = SentenceTransformer("{model_path}")\n'
            f'head = load_file("{model_path}/{HEAD}")\n'
            'embeddings = body.encode(["an example text"], convert_to_tensor=True)\n'
            'probabilities = (embeddings @ head["weight"].T + head["bias"]).softmax(-1)\n```')
