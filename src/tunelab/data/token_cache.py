"""Tokenise once: encoded datasets are cached on disk, keyed by what they depend on.

The key covers the examples themselves, the tokenizer (its full serialised pipeline and
vocabulary) and the task's own cache key (its settings and encoding version), so that any
change to one of them is a cache miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, load_from_disk
from transformers import PreTrainedTokenizerBase

from tunelab.cache import cache_home
from tunelab.rundir import atomic_path

if TYPE_CHECKING:
    from tunelab.tasks.base import Task


def cache_root() -> Path:
    return cache_home() / "tokenized"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # a call sets these per request; they are not part of what the tokenizer is
        state.pop("truncation", None)
        state.pop("padding", None)
        pipeline = json.dumps(state, sort_keys=True)
    else:
        pipeline = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    settings = json.dumps({"class": type(tokenizer).__name__,
                           "padding_side": tokenizer.padding_side,
                           "truncation_side": tokenizer.truncation_side}, sort_keys=True)
    return hashlib.sha256((pipeline + settings).encode()).hexdigest()


def cache_key(task: Task, examples: Any, tokenizer: PreTrainedTokenizerBase) -> str:
    digest = hashlib.sha256()
    digest.update(pickle.dumps(examples, protocol=4))
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    digest.update(task.cache_key().encode())
    return digest.hexdigest()[:32]


def cached_encode(task: Task, examples: Any, tokenizer: PreTrainedTokenizerBase,
                  enabled: bool = True) -> tuple[Dataset, bool]:
    """(the encoded dataset, whether it came from the cache)."""
    if not len(examples):  # no training data (zero-shot): tokenizers refuse an empty batch
        return Dataset.from_dict({"input_ids": [], "attention_mask": []}), False
    if not enabled:
        return task.encode(examples, tokenizer), False
    path = cache_root() / cache_key(task, examples, tokenizer)
    if path.is_dir():
        try:
            return load_from_disk(str(path)), True
        except (OSError, ValueError, FileNotFoundError):
            pass  # a damaged entry is rebuilt below
    dataset = task.encode(examples, tokenizer)
    with atomic_path(path) as tmp:
        dataset.save_to_disk(str(tmp))
    return load_from_disk(str(path)), False
