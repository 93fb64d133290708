"""An ONNX Runtime session behind the call interface of a transformers model, so that the
tasks' batching, decoding and scoring code runs unchanged on either backend. It takes and
gives numpy arrays (`takes_numpy`), so a served model needs no torch."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


class OnnxModel:
    takes_numpy = True

    def __init__(self, path: Path, threads: int | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        if not spinning:  # a server shares its cores; idle spinning would steal them
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        # a sentence-embedding classifier's export gives its embeddings too
        self.embeds = "embeddings" in {o.name for o in self.session.get_outputs()}

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, **batch: Any) -> SimpleNamespace:
        (logits,) = self.session.run(["logits"], self._feeds(batch))
        return SimpleNamespace(logits=logits)

    def embed(self, **batch: Any) -> np.ndarray:
        (embeddings,) = self.session.run(["embeddings"], self._feeds(batch))
        return embeddings

    def _feeds(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        feeds = {name: np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value,
                                            dtype=np.int64)
                 for name, value in batch.items() if name in self.input_names}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feeds:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return feeds


def default_threads() -> int:
    """What torch would use (its intra-op default: the cores this process may run on)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def file_mb(path: Path) -> float:
    return round(os.path.getsize(path) / 2**20, 2)
