"""A training run from config to run directory: data, model, method, Trainer, evaluation,
and the files a user reads afterwards."""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, set_seed

from tunelab import registry, run_slot
from tunelab.config import RunConfig
from tunelab.data.token_cache import cached_encode
from tunelab.errors import ConfigError, did_you_mean
from tunelab.evaluation.plots import plot_curves, save_figure
from tunelab.evaluation.summary import run_report
from tunelab.methods.base import trainable_summary
from tunelab.model_card import model_card
from tunelab.models import (
    check_max_length,
    load_tokenizer,
    resolve_model,
    warn_if_unreadable,
)
from tunelab.rundir import (
    MODEL_META,
    atomic_path,
    exclusive,
    fingerprint,
    package_versions,
    swap_in,
    write_json,
    write_jsonl,
    write_text,
)
from tunelab.tasks.base import EvalResult, Task
from tunelab.training.frozen_layers import FrozenLowerLayers
from tunelab.training.inputs import Splits, load_splits
from tunelab.training.trainer import build_trainer


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    report: str


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def train_run(config: RunConfig, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Train into a work folder under an exclusive lock; put the run in place when whole."""
    with exclusive(config.run_dir):
        slot = run_slot.plan(config.run_dir, config.to_yaml(), resume, overwrite)
        try:
            result = _train(config, slot)
        except BaseException:
            run_slot.discard_unresumable(slot)
            raise
        swap_in(slot.work, slot.final)
    _record(slot.final, result.metrics)
    return RunResult(slot.final, result.metrics, result.report)


def _train(config: RunConfig, slot: run_slot.RunSlot) -> RunResult:
    run_dir = slot.work
    set_threads(config.threads)
    task, splits = load_splits(config)
    resolved = resolve_model(config.model.name, config.model.allow_network)
    tokenizer = load_tokenizer(resolved)
    check_max_length(resolved, config.data.max_length)
    method = registry.methods.get(config.method.name)(config.method.options)
    lr = config.training.lr or method.default_lr

    metric = config.training.early_stopping.metric or task.default_metric
    if metric not in task.trainer_metrics:
        raise ConfigError(
            f"training.early_stopping.metric: '{metric}' is not reported for {task.name}"
            f"{did_you_mean(metric, task.trainer_metrics)}; use one of: "
            f"{', '.join(task.trainer_metrics)}")

    set_seed(config.seed)
    model = task.build_model(resolved, config.model.dropout)
    method.check(model, task)  # bad method options fail here, before any data is encoded
    truncated_at = _truncate_at_percentile(config, task, tokenizer, splits)
    started = time.perf_counter()
    train_set, train_cached = cached_encode(task, splits.train, tokenizer,
                                            config.data.cache_tokenized)
    dev_set, _ = cached_encode(task, splits.dev, tokenizer, config.data.cache_tokenized)
    tokenize_seconds = time.perf_counter() - started
    unknown_share = warn_if_unreadable(
        tokenizer, list(getattr(splits.train, "texts", None) or
                        [" ".join(words) for words in getattr(splits.train, "tokens", [])]),
        str(config.data.train), config.model.name)

    frozen = (FrozenLowerLayers(model, config.training.freeze_layers)
              if config.training.freeze_layers else None)
    collator = None
    caching = frozen is not None and config.training.cache_frozen
    if caching:
        train_set = frozen.attach(train_set, config.training.eval_batch_size, "caching train")
        dev_set = frozen.attach(dev_set, config.training.eval_batch_size, "caching dev")
        collator = frozen.collator(task.collator(tokenizer))
    checkpoint = slot.checkpoint
    with frozen.top_layers_only() if caching else contextlib.nullcontext():
        model = method.prepare(model, task)
        run_slot.open_work(slot, config.to_yaml())  # only now: bad input has been refused
        trainer = build_trainer(config, task, model, tokenizer, train_set, dev_set, run_dir, lr,
                                metric, collator)
        prepare_seconds = time.perf_counter() - started
        output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    model = trainer.model
    trainable, total = trainable_summary(model)

    test = task.evaluate(splits.test, task.logits_for_examples(model, tokenizer, splits.test))
    rows = {**_baselines(config, task, resolved, tokenizer, splits), "model": test.metrics}
    summary = {
        "task": task.name, "model": config.model.name, "method": config.method.name,
        "labels": task.labels, "metric": metric, "lr": lr,
        "test": test.metrics, "per_class_f1": test.per_class_f1,
        "baselines": {k: v for k, v in rows.items() if k != "model"},
        "train": {
            "seconds": round(seconds, 2),
            "samples_per_second": round(output.metrics.get("train_samples_per_second", 0.0), 2),
            "steps": trainer.state.global_step,
            "epochs": float(trainer.state.epoch or 0.0),
            "best_dev_metric": trainer.state.best_metric or float("nan"),
            "trainable_parameters": trainable, "total_parameters": total,
            "resumed_from": checkpoint,
            "tokenize_seconds": round(tokenize_seconds, 2),
            "prepare_seconds": round(prepare_seconds, 2), "tokenized_from_cache": train_cached,
            "frozen_layers": config.training.freeze_layers, "max_length": task.max_length,
            "truncated_at_percentile": truncated_at,
            "unknown_token_share": round(unknown_share, 4),
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "sizes": {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)},
        "sources": splits.sources,
        "fingerprints": _fingerprints(config),
        "seed": config.seed, "threads": torch.get_num_threads(),
        "hardware": f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
        if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "versions": package_versions(),
    }
    _write_run(config, run_dir, method, model, tokenizer, task, summary, rows, test,
               trainer.state.log_history)
    return RunResult(slot.final, summary, (run_dir / "report.txt").read_text(encoding="utf-8"))


def _truncate_at_percentile(config: RunConfig, task: Task, tokenizer: Any, splits: Splits
                            ) -> int | None:
    """Lower task.max_length to the training data's length percentile, when that is shorter."""
    percentile = config.data.length_percentile
    lengths = task.token_lengths(splits.train, tokenizer) if percentile else None
    if not lengths:
        return None
    at = max(8, math.ceil(float(np.percentile(lengths, percentile))))
    task.max_length = min(task.max_length, at)
    return at


def _record(run_dir: Path, summary: dict[str, Any]) -> None:
    """Add the run to the project store. A store that cannot be reached must not cost the
    user a finished run, so this warns instead of failing."""
    from tunelab.store.records import record_run

    try:
        record_run(run_dir, summary)
    except Exception as error:
        logging.getLogger("tunelab").warning(
            "run %s is written, but not recorded in the store (%s); check TUNELAB_DB_URL",
            run_dir, error)


def _baselines(config: RunConfig, task: Task, resolved: Any, tokenizer: Any, splits: Splits
               ) -> dict[str, dict[str, float]]:
    if not config.evaluation.baselines:
        return {}
    rows = {"majority": task.majority_baseline(splits.train, splits.test).metrics}
    encoder = AutoModel.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs)
    probe = task.probe_baseline(encoder, tokenizer, splits.train, splits.test,
                                config.evaluation.probe_max_examples, config.seed)
    rows["probe"] = probe.metrics
    return rows


def _fingerprints(config: RunConfig) -> dict[str, str]:
    paths = {"train": config.data.train, "dev": config.data.dev, "test": config.data.test}
    return {split: fingerprint(path) for split, path in paths.items() if path is not None}


def _write_run(config: RunConfig, run_dir: Path, method: Any, model: Any, tokenizer: Any,
               task: Task, summary: dict[str, Any], rows: dict[str, Any], test: EvalResult,
               log_history: list[dict[str, Any]]) -> None:
    with atomic_path(run_dir / "model") as tmp:
        method.save(model, tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / MODEL_META, {
            **task.meta(), "method": config.method.name, "base_model": config.model.name,
            "text_pair": config.data.text_pair_column is not None,
            "allow_network": config.model.allow_network, "tunelab_version":
            summary["versions"].get("tunelab"),
        })
    save_figure(run_dir / "curves.png", lambda fig: plot_curves(fig, log_history,
                                                                summary["metric"]))
    for name, draw in test.figures.items():
        save_figure(run_dir / name, draw)
    write_jsonl(run_dir / "predictions.jsonl", test.predictions)
    write_jsonl(run_dir / "errors.jsonl", [p for p in test.predictions if not p["correct"]][:200])
    write_json(run_dir / "log_history.json", log_history)
    write_json(run_dir / "metrics.json", summary)
    write_text(run_dir / "report.txt", run_report(config.name, summary, rows, test.report,
                                                  task.headline_metrics, task.report_kind))
    write_text(run_dir / "README.md", model_card(config, task, summary, rows, test.report))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
