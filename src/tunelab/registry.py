"""Name -> implementation tables for tasks, tuning methods and data readers.

Entries are "module:attribute" strings, imported on first use, so that naming a
method in a config does not import every other method's dependencies. Adding a
task, method or reader is one module plus one line below. Third-party packages
can add entries through the entry-point groups ``tunelab.tasks``,
``tunelab.methods`` and ``tunelab.readers``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from tunelab.errors import ConfigError, did_you_mean


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._loaded: dict[str, Any] = {}
        for ep in entry_points(group=f"tunelab.{kind}s"):
            self._entries.setdefault(ep.name, ep.value)

    def register(self, name: str, target: str | Any) -> None:
        """Add an entry: a "module:attribute" string or the object itself."""
        if isinstance(target, str):
            self._entries[name] = target
            self._loaded.pop(name, None)
        else:
            self._entries[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """`name` if registered, else a ConfigError naming the closest entry; imports nothing."""
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"choose one of: {', '.join(self.names())}"
            )
        return name

    def get(self, name: str) -> Any:
        self.check(name)
        if name not in self._loaded:
            module_name, _, attr = self._entries[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module_name), attr)
        return self._loaded[name]


tasks = Registry(
    "task",
    {
        "text-classification": "tunelab.tasks.text_classification:TextClassification",
        "token-classification": "tunelab.tasks.token_classification:TokenClassification",
    },
)

methods = Registry(
    "method",
    {
        "full": "tunelab.methods.full:FullFineTuning",
        "head": "tunelab.methods.head:HeadOnly",
        "lora": "tunelab.methods.lora:LoRA",
        "adalora": "tunelab.methods.adalora:AdaLoRA",
        "ia3": "tunelab.methods.ia3:IA3",
        "prefix": "tunelab.methods.prompt_learning:PrefixTuning",
        "prompt": "tunelab.methods.prompt_learning:PromptTuning",
        "p-tuning": "tunelab.methods.prompt_learning:PTuning",
        "adapter": "tunelab.methods.adapters:BottleneckAdapters",
        "zero-shot": "tunelab.methods.zero_shot:ZeroShot",
        "few-shot": "tunelab.methods.few_shot:FewShot",
        "prompt-lm": "tunelab.methods.prompt_lm:PromptLM",
        "distill": "tunelab.methods.distill:Distill",
    },
)

readers = Registry(
    "reader",
    {
        "csv": "tunelab.data.readers.delimited:read_csv",
        "tsv": "tunelab.data.readers.delimited:read_tsv",
        "jsonl": "tunelab.data.readers.jsonl:read_jsonl",
        "conll": "tunelab.data.readers.conll:read_conll",
        "seqio": "tunelab.data.readers.seqio:read_seqio",
        "bmes": "tunelab.data.readers.bmes:read_bmes",
    },
)

# An exporter entry names an Exporter subclass (tunelab.export.base).
exporters = Registry("exporter", {"onnx": "tunelab.export.onnx:OnnxExporter"})
