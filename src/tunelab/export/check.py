"""Compare inference backends on labelled data: agreement with the reference, the task
metric, batch throughput and single-text latency."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab.tasks.base import Task

LATENCY_SAMPLES = 50


@dataclass
class Comparison:
    metric: str
    metrics: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    cold_start_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "metric"}


def compare_backends(task: Task, tokenizer: Any, examples: Any, backends: dict[str, Any],
                     batch_size: int = 32) -> Comparison:
    """The first backend is the reference the others must agree with."""
    comparison = Comparison(task.default_metric)
    reference = None
    for name, model in backends.items():
        started = time.perf_counter()
        logits = task.logits_for_examples(model, tokenizer, examples, batch_size)
        comparison.throughput[name] = round(len(examples) / (time.perf_counter() - started), 1)
        comparison.metrics[name] = round(
            task.evaluate(examples, logits).metrics[task.default_metric], 6)
        if reference is None:
            reference = logits
        else:
            comparison.agreement[name] = round(task.agreement(reference, logits), 6)
        comparison.latency_ms[name] = round(single_latency_ms(task, tokenizer, examples, model), 3)
    return comparison


COLD_START = """
import json, sys
from pathlib import Path
from tunelab.predictor import Predictor
model_file = Path(sys.argv[3]) if sys.argv[3] else None
Predictor(sys.argv[1], sys.argv[2], model_file=model_file).predict([json.loads(sys.argv[4])])
"""


def cold_start_seconds(run_dir: Path, backend: str, model_file: Path | None, probe: Any
                       ) -> float:
    """Seconds from starting a fresh Python process to its first prediction (interpreter,
    imports, model load, one prediction), as a new server or a scaled-out replica pays.
    `model_file` is the backend's file (an export not yet in place), None for torch."""
    command = [sys.executable, "-c", COLD_START, str(run_dir), backend, str(model_file or ""),
               json.dumps(probe)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True,
                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return round(time.perf_counter() - started, 3)


def single_latency_ms(task: Task, tokenizer: Any, examples: Any, model: Any) -> float:
    return statistics.median(latencies_ms(task, tokenizer, examples, model))


def latencies_ms(task: Task, tokenizer: Any, examples: Any, model: Any,
                 samples: int = LATENCY_SAMPLES) -> list[float]:
    """Milliseconds for each of the first `samples` examples, predicted one at a time."""
    timings = []
    for i in range(min(samples, len(examples))):
        one = examples.subset([i])
        started = time.perf_counter()
        task.logits_for_examples(model, tokenizer, one, 1)
        timings.append((time.perf_counter() - started) * 1000)
    return timings
