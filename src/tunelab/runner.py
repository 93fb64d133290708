"""A training run from config to run directory: data, model, method, Trainer, evaluation,
and the files a user reads afterwards."""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, set_seed

from tunelab import registry, run_slot
from tunelab.config import RunConfig
from tunelab.data.examples import Examples
from tunelab.data.token_cache import cached_encode
from tunelab.errors import ConfigError, did_you_mean
from tunelab.evaluation.calibration import calibrate
from tunelab.evaluation.health import training_warnings
from tunelab.evaluation.plots import plot_curves, save_figure
from tunelab.evaluation.report import ROW_NAMES, run_report
from tunelab.hf_artefacts import name_base_by_hub_id, write_label_config
from tunelab.methods.base import Method, TrainingPlan, trainable_summary
from tunelab.model_card import model_card
from tunelab.models import (
    check_max_length,
    load_tokenizer,
    resolve_model,
    warn_if_unreadable,
)
from tunelab.record import RunRecord, TrainStats
from tunelab.run_data import Splits, load_splits
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
from tunelab.training.extend import keep_training
from tunelab.training.frozen_layers import FrozenLowerLayers
from tunelab.training.lr_range import RangeTest, plot_range, range_test
from tunelab.training.plan import training_plan
from tunelab.training.probe_start import (
    Probe,
    head_rate,
    head_start,
    probe_model,
    start_from_probe,
)
from tunelab.training.trainer import build_trainer, dev_scores, train_with_trainer


@dataclass
class RunResult:
    run_dir: Path
    record: RunRecord
    report: str

    @property
    def metrics(self) -> dict[str, Any]:
        """The run record as plain data (what metrics.json holds)."""
        return self.record.to_json()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def train_run(config: RunConfig, resume: bool = False, overwrite: bool = False,
              data: dict[str, Examples] | None = None) -> RunResult:
    """Train into a work folder under an exclusive lock; put the run in place when whole.
    `data` holds splits already in memory (train, dev, test), used instead of the files."""
    with exclusive(config.run_dir):
        slot = run_slot.plan(config.run_dir, config.to_yaml(), resume, overwrite)
        try:
            result = _train(config, slot, data)
        except BaseException:
            run_slot.discard_unresumable(slot)
            raise
        swap_in(slot.work, slot.final)
    _record(slot.final, result.record)
    return RunResult(slot.final, result.record, result.report)


def _train(config: RunConfig, slot: run_slot.RunSlot,
           data: dict[str, Examples] | None) -> RunResult:
    run_dir = slot.work
    set_threads(config.threads)
    task, splits = load_splits(config, data)
    resolved = resolve_model(config.model.name, config.model.allow_network)
    tokenizer = load_tokenizer(resolved)
    check_max_length(resolved, config.data.max_length)
    method: Method = registry.methods.get(config.method.name)(config.method.options)
    lr = config.training.lr if isinstance(config.training.lr, float) else method.default_lr

    metric = config.training.early_stopping.metric or task.default_metric
    if metric not in task.trainer_metrics:
        raise ConfigError(
            f"training.early_stopping.metric: '{metric}' is not reported for {task.name}"
            f"{did_you_mean(metric, task.trainer_metrics)}; use one of: "
            f"{', '.join(task.trainer_metrics)}")

    truncated_at = _percentile_length(config, task, tokenizer, splits)
    if truncated_at is not None and truncated_at < task.max_length:
        task = task.with_changes(max_length=truncated_at)
    set_seed(config.seed)
    model = task.build_model(resolved, config.model.dropout)
    method.check(model, task)  # bad method options fail here, before any data is encoded
    started = time.perf_counter()
    train_set, train_cached = cached_encode(task, splits.train, tokenizer,
                                            config.data.cache_tokenized)
    dev_set, _ = cached_encode(task, splits.dev, tokenizer, config.data.cache_tokenized)
    tokenize_seconds = time.perf_counter() - started
    unknown_share = warn_if_unreadable(tokenizer, splits.train.plain_texts(),
                                       str(config.data.train), config.model.name)

    train_set = method.use_data(task, tokenizer, train_set)
    plan = training_plan(config, len(train_set), method.micro_batch_size)
    method.check_plan(model, task, plan)
    learns = len(splits.train) > 0  # zero-shot without training data learns from nothing
    start = head_start(config, task, model) if method.uses_task_head else "own"
    head_lr = head_rate(config, start, lr)
    probe = (start_from_probe(config, task, model, tokenizer, splits, dev_set, metric, start)
             if learns else None)
    frozen = (FrozenLowerLayers(model, config.training.freeze_layers)
              if config.training.freeze_layers else None)
    collator = None
    # a method that is not a weight delta (added tokens or layers) changes what the frozen
    # layers compute, so their outputs cannot be cached
    caching = frozen is not None and config.training.cache_frozen and method.mergeable
    if caching:
        train_set = frozen.attach(train_set, config.training.eval_batch_size, "caching train")
        dev_set = frozen.attach(dev_set, config.training.eval_batch_size, "caching dev")
        collator = frozen.collator(task.collator(tokenizer))
    checkpoint = slot.checkpoint
    with frozen.top_layers_only() if caching else contextlib.nullcontext():
        model = method.prepare(model, task, plan)
        run_slot.open_work(slot, config.to_yaml())  # only now: bad input has been refused
        lr_range = None
        if config.training.lr == "find":
            lr_range = range_test(config, plan, model, train_set,
                                  collator or task.collator(tokenizer), tokenizer, lr, metric)
            lr = lr_range.picked
            head_lr = head_rate(config, start, lr)
            _say_range(lr_range, run_dir)
        prepare_seconds = time.perf_counter() - started
        trained = method.fit(model, task, tokenizer, splits.train, splits.dev, plan, run_dir)
        if trained is not None and trained.tokenizer is not None:
            tokenizer = trained.tokenizer
            dev_set, _ = cached_encode(task, splits.dev, tokenizer, config.data.cache_tokenized)
        if trained is None:
            def trainer_for(plan: TrainingPlan, **options: Any) -> Trainer:
                return build_trainer(config, plan, task, model, tokenizer, train_set, dev_set,
                                     run_dir, lr, metric, collator,
                                     method.callbacks(model, plan),
                                     method.keeps_best_checkpoint, head_lr=head_lr,
                                     **options)
            trained = train_with_trainer(trainer_for(plan), checkpoint)
            if method.keeps_best_checkpoint:
                trained = keep_training(
                    trained, plan, probe, config.training.extend_budget, metric,
                    lambda more: trainer_for(more, checkpoints="checkpoints-extension",
                                             min_step=0))
    seconds = time.perf_counter() - started
    training_rss = peak_rss_mb()
    model = trained.model
    trainable, total = trainable_summary(model)
    dev_metric = trained.best_dev_metric if method.keeps_best_checkpoint else math.nan
    if math.isnan(dev_metric):  # the last step is kept, or no evaluation fell in the run
        dev_metric = dev_scores(config, task, model, tokenizer, dev_set).get(metric, math.nan)
    shipped = "fine-tuned" if trainable else "untrained"  # zero-shot, a prompted LM
    if probe is not None and config.training.fallback_to_probe and probe.beats(dev_metric):
        model, method, shipped = (probe_model(task, resolved, config.model.dropout, probe),
                                  registry.methods.get("head")(), "probe")
    # a shipped probe is a logistic regression, calibrated as fitted
    calibration = (calibrate(model, task, tokenizer, splits.dev)
                   if config.evaluation.calibrate and shipped != "probe"
                   and splits.dev is not splits.test else {})
    decision = task.fit_decision(model, tokenizer, splits.dev)
    test = (probe.test if shipped == "probe" and probe is not None and probe.test and
            not decision else
            task.evaluate(splits.test, task.logits_for_examples(model, tokenizer, splits.test)))
    record = RunRecord(
        name=config.name, task=task.name, model=config.model.name, method=config.method.name,
        labels=list(getattr(task, "labels", [])), metric=metric, lr=lr, test=test.metrics,
        per_class_f1=test.per_class_f1, baselines=_baselines(config, task, splits, probe),
        dev_baselines=_dev_baselines(config, task, splits, probe, metric), shipped=shipped,
        calibration=calibration, out_of_scope=decision or None, lr_range_test=(
            {"picked": lr_range.picked, "steps": len(lr_range.lrs)} if lr_range else None),
        train=TrainStats(
            seconds=round(seconds, 2),
            samples_per_second=round(trained.samples_per_second, 2), steps=trained.steps,
            epochs=trained.epochs, best_dev_metric=dev_metric,
            extended_steps=trained.extended_steps, head_start=start, head_lr=head_lr,
            trainable_parameters=trainable, total_parameters=total, resumed_from=checkpoint,
            tokenize_seconds=round(tokenize_seconds, 2),
            prepare_seconds=round(prepare_seconds, 2), tokenized_from_cache=train_cached,
            frozen_layers=config.training.freeze_layers, max_length=task.max_length,
            truncated_at_percentile=truncated_at,
            unknown_token_share=round(unknown_share, 4), peak_rss_mb=round(training_rss, 1)),
        max_epochs=plan.epochs, peak_rss_mb=round(peak_rss_mb(), 1),
        sizes={"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)},
        sources=splits.sources, fingerprints=_fingerprints(config, splits),
        seed=config.seed, threads=torch.get_num_threads(),
        hardware=f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
        if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        versions=package_versions())
    record.warnings = training_warnings(record, trained.log_history)
    _write_run(config, run_dir, slot.final, method, model, tokenizer, task, record, test,
               trained.log_history)
    return RunResult(slot.final, record, (run_dir / "report.txt").read_text(encoding="utf-8"))


def _say_range(found: RangeTest, run_dir: Path) -> None:
    save_figure(run_dir / "lr_range.png", lambda fig: plot_range(fig, found))
    lowest = found.lrs[found.losses.index(min(found.losses))] if found.lrs else found.picked
    print(f"learning-rate range test: {len(found.lrs)} steps from {found.lrs[0]:.2g} to "
          f"{found.lrs[-1]:.2g}; the loss was lowest at {lowest:.2g}, so lr {found.picked:.2g}"
          " (lr_range.png)" if found.lrs else "learning-rate range test: no loss was logged; "
          f"lr {found.picked:.2g}, the method's default", file=sys.stderr, flush=True)


def _percentile_length(config: RunConfig, task: Task, tokenizer: Any, splits: Splits
                       ) -> int | None:
    """The training data's length percentile in tokens (data.length_percentile), if set."""
    percentile = config.data.length_percentile
    lengths = task.token_lengths(splits.train, tokenizer) if percentile else None
    if not lengths:
        return None
    return max(8, math.ceil(float(np.percentile(lengths, percentile))))


def _record(run_dir: Path, record: RunRecord) -> None:
    """Add the run to the project store. A store that cannot be reached must not cost the
    user a finished run, so this warns instead of failing."""
    from tunelab.store.records import record_run

    try:
        record_run(run_dir, record)
    except Exception as error:
        logging.getLogger("tunelab").warning(
            "run %s is written, but not recorded in the store (%s); check TUNELAB_DB_URL",
            run_dir, error)


def _baselines(config: RunConfig, task: Task, splits: Splits, probe: Probe | None
               ) -> dict[str, dict[str, float | int]]:
    """Test scores of the majority class and of the frozen-encoder probe."""
    if not config.evaluation.baselines or not len(splits.train):
        return {}
    scores: dict[str, dict[str, float | int]] = dict(task.baselines(splits.train, splits.test))
    if probe is not None and probe.test is not None:
        scores["probe"] = probe.test.metrics
    return scores


def _dev_baselines(config: RunConfig, task: Task, splits: Splits, probe: Probe | None,
                   metric: str) -> dict[str, dict[str, float | int]]:
    """The same on dev, where the run's own choices are made (evaluation/health.py)."""
    scores: dict[str, dict[str, float | int]] = {}
    if config.evaluation.baselines and len(splits.train):
        scores.update(task.baselines(splits.train, splits.dev))
    if probe is not None:
        scores["probe"] = {metric: probe.dev}
    return scores


def _fingerprints(config: RunConfig, splits: Splits) -> dict[str, str]:
    """sha256 of each data file the splits were read from (examples given in memory have
    no file)."""
    paths = {"train": config.data.train, "dev": config.data.dev, "test": config.data.test}
    return {split: fingerprint(path) for split, path in paths.items()
            if path is not None and splits.sources.get(split) == str(path)}


def _write_run(config: RunConfig, run_dir: Path, final: Path, method: Method, model: Any,
               tokenizer: Any, task: Task, record: RunRecord, test: EvalResult,
               log_history: list[dict[str, Any]]) -> None:
    with atomic_path(run_dir / "model") as tmp:
        name_base_by_hub_id(model, config.model.name)
        method.save(model, tmp)
        tokenizer.model_max_length = task.max_length  # truncation=True then cuts as trained
        tokenizer.save_pretrained(tmp)
        write_label_config(model, tmp)
        write_json(tmp / MODEL_META, {
            **task.meta(), "base_model": config.model.name,
            # a shipped probe is the pretrained encoder with a fitted head: a head-only model
            "method": "head" if record.shipped == "probe" else config.method.name,
            "text_pair": config.data.text_pair_column is not None,
            "allow_network": config.model.allow_network,
            "tunelab_version": record.versions.get("tunelab"),
        })
    references = {f"{ROW_NAMES[name]} (dev)": scores[record.metric]
                  for name, scores in record.dev_baselines.items()
                  if isinstance(scores.get(record.metric), float) and name in ROW_NAMES}
    extended = record.train.extended_steps
    save_figure(run_dir / "curves.png", lambda fig: plot_curves(
        fig, log_history, record.metric, references,
        record.train.steps - extended if extended else None))
    for name, draw in test.figures.items():
        save_figure(run_dir / name, draw)
    write_jsonl(run_dir / "predictions.jsonl", test.predictions)
    write_jsonl(run_dir / "errors.jsonl", [p for p in test.predictions if not p["correct"]][:200])
    write_json(run_dir / "log_history.json", log_history)
    write_json(run_dir / "metrics.json", record.to_json())
    write_text(run_dir / "report.txt", run_report(record, test.report, task.headline_metrics,
                                                  task.report_kind))
    card = model_card(record, task, test.report, str(final), run_dir / "model")
    write_text(run_dir / "README.md", card)
    write_text(run_dir / "model" / "README.md", card)  # in place of peft's empty template
    for folder in ("checkpoints", "checkpoints-extension"):
        shutil.rmtree(run_dir / folder, ignore_errors=True)
