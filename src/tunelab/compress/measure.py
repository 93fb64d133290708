"""Measure compressed variants against the original run on labelled examples: the metric
and agreement with the original PyTorch model, size on disk, batch-1 latency (p50, p99),
batch-32 throughput and cold start (a fresh process until its first prediction)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.console import err
from tunelab.export.check import cold_start_seconds, latencies_ms
from tunelab.export.runtime import file_mb

LATENCY_TEXTS = 100
PASSES = 2  # throughput: the faster of two passes (on a shared machine, one can be slowed)


@dataclass(frozen=True)
class Variant:
    name: str
    run_dir: Path
    backend: str  # torch, onnx (int8) or onnx-fp32
    file: Path | None = None  # a model file for the backend other than the run's export


@dataclass
class Measured:
    name: str
    run: str
    backend: str
    file: str
    metric: float
    agreement: float
    drop_pts: float
    size_mb: float
    latency_p50_ms: float
    latency_p99_ms: float
    throughput: float
    cold_start_s: float
    dev_drop_pts: float | None = None  # the loss on dev, where the selection is made

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_size_mb(run_dir: Path) -> float:
    return round(sum(file_mb(p) for p in (run_dir / "model").glob("*.safetensors")), 2)


def measure(variants: list[Variant], examples: Any, dev: Any = None) -> list[Measured]:
    """The first variant is the reference (the original run on PyTorch). With `dev`
    examples, each variant's loss on them too: the selection is made there, not on test."""
    from tunelab.predictor import Predictor

    rows: list[Measured] = []
    reference: Any = None
    reference_metric = 0.0
    dev_reference: float | None = None
    probe = examples.inputs()[0]
    for number, variant in enumerate(variants, 1):
        err.print(f"measuring {variant.name} ({number} of {len(variants)}) on "
                  f"{len(examples)} examples", highlight=False)
        loaded = Predictor(variant.run_dir, variant.backend, model_file=variant.file)
        task, model, tokenizer = loaded.task, loaded.model, loaded.tokenizer
        task.logits_for_examples(model, tokenizer, examples.subset(range(
            min(32, len(examples)))), 32)  # warm-up
        seconds = []
        for _ in range(PASSES):
            started = time.perf_counter()
            logits = task.logits_for_examples(model, tokenizer, examples, 32)
            seconds.append(time.perf_counter() - started)
        throughput = len(examples) / min(seconds)
        metric = float(task.evaluate(examples, logits).metrics[task.default_metric])
        if reference is None:
            reference, reference_metric = logits, metric
        latencies = latencies_ms(task, tokenizer, examples, model, LATENCY_TEXTS)
        dev_drop = None
        if dev is not None:
            scored = task.evaluate(dev, task.logits_for_examples(model, tokenizer, dev, 32))
            dev_metric = float(scored.metrics[task.default_metric])
            dev_reference = dev_metric if dev_reference is None else dev_reference
            dev_drop = round((dev_reference - dev_metric) * 100, 3)
        path = None if loaded.backend == "torch" else _file(variant)
        rows.append(Measured(
            name=variant.name, run=str(variant.run_dir), backend=variant.backend,
            file=loaded.backend, metric=round(metric, 6),
            agreement=round(float(task.agreement(reference, logits)), 6),
            drop_pts=round((reference_metric - metric) * 100, 3),
            size_mb=model_size_mb(variant.run_dir) if path is None else file_mb(path),
            latency_p50_ms=round(float(np.percentile(latencies, 50)), 3),
            latency_p99_ms=round(float(np.percentile(latencies, 99)), 3),
            throughput=round(throughput, 1),
            cold_start_s=cold_start_seconds(variant.run_dir, variant.backend, path, probe),
            dev_drop_pts=dev_drop))
    return rows


def _file(variant: Variant) -> Path:
    from tunelab.predictor import exported_model

    if variant.file is not None:
        return variant.file
    found = exported_model(variant.run_dir, variant.backend)
    assert found is not None
    return found[1]
