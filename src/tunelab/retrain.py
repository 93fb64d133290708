"""Continual retraining: fine-tune a production model on new examples plus a rehearsal
sample of its original training data, then promote it only if it learned the new data
without forgetting the old.

Forgetting is measured, not assumed: the original test set is scored before and after,
and optionally against a model retrained without rehearsal.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig
from tunelab.data.examples import Examples
from tunelab.data.readers import Table
from tunelab.errors import ConfigError, DataError
from tunelab.lifecycle_options import RetrainOptions
from tunelab.predictor import Predictor
from tunelab.run_data import read_examples
from tunelab.rundir import write_csv, write_json, write_text

__all__ = ["RetrainOptions", "RetrainResult", "retrain"]


@dataclass
class RetrainResult:
    run_dir: Path
    promoted: bool
    reasons: list[str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def new_examples(source: Predictor, config: RunConfig, options: RetrainOptions) -> Examples:
    if (options.data is None) == (not options.feedback):
        raise ConfigError("give exactly one of --data FILE or --feedback")
    if options.data is not None:
        if not options.data.is_file():
            raise DataError(f"{options.data}: file not found")
        return read_examples(source.task, options.data, config)
    from tunelab.store.records import feedback_rows

    rows = feedback_rows(source.run_dir)
    if not rows:
        raise DataError(f"{source.run_dir}: no feedback stored for this model; send "
                        "corrections to POST /v1/feedback, or use --data FILE")
    if source.takes_pairs:
        raise ConfigError(f"{source.run_dir}: the model takes text pairs, and feedback holds "
                          "single texts; retrain it with --data FILE (both text columns)")
    text, label = str(config.data.text_column), str(config.data.label_column)
    table = Table(Path("feedback"), [text, label],
                  [{text: r.text, label: r.correct_label} for r in rows], [r.id for r in rows])
    return source.task.examples_from_table(table, config)


def split(n: int, fraction: float, rng: random.Random) -> tuple[list[int], list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    cut = max(1, round(n * fraction)) if n > 1 else 0
    return sorted(order[cut:]), sorted(order[:cut])


def concat(*parts: Examples) -> Examples:
    return type(parts[0]).concat(parts)


def accuracy(predictor: Predictor, examples: Examples) -> float:
    """Share of examples whose predicted label is the gold one; labels the model does not
    know count as wrong (the model before retraining meets new labels here)."""
    if not len(examples):
        return float("nan")
    predicted = predictor.predict(examples.inputs())
    gold = examples.labels  # type: ignore[attr-defined]
    return sum(predictor.task.prediction_labels(p) == [g]
               for p, g in zip(predicted, gold, strict=True)) / len(examples)


def grown_start(source: Predictor, labels: list[str], calibration: Examples,
                directory: Path) -> Path:
    """The source model with head rows for the new labels fitted on its own features, saved
    where retraining starts from it."""
    import torch

    from tunelab.tasks.head_growth import grow_head, head_inputs, save_grown

    with head_inputs(source.model, len(source.labels)):
        features = source.task.logits_for_examples(source.model, source.tokenizer, calibration)
    grown = grow_head(source.model, source.labels, labels, torch.from_numpy(features),
                      calibration.labels)  # type: ignore[attr-defined]
    return save_grown(grown, source.tokenizer, source.meta, labels, directory)


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a target that exists (unless --overwrite), that is not a
    tunelab run, or that is the production model."""
    from tunelab.run_slot import refuse_replacing

    if not out.exists():
        return
    if not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or choose "
                          "another name with --name")
    refuse_replacing(out, "retrain --overwrite")


def kept(examples: Examples, path: Path, config: RunConfig) -> Examples:
    """Write examples made in memory next to the runs (in the run's own columns), so the
    run's config names the data it trained on; returns them with that file as source."""
    columns, rows = examples.to_rows(config.data)
    write_csv(path, columns, rows)
    examples.source = str(path)
    return examples


def variant_config(config: RunConfig, name: str, start: Path, labels: list[str],
                   data: dict[str, Path], options: RetrainOptions) -> RunConfig:
    """The source run's config, continued from `start` on other data."""
    changed = config.model_dump()
    changed.update(name=name, seed=options.seed)  # one seed for the sampling and training
    changed["model"]["name"] = str(start)
    changed["task"]["labels"] = labels
    changed["data"].update({split: str(path) for split, path in data.items()},
                           format="auto", header=True)
    # the head continues from the source model's, and no probe: retrain's gates are its own
    changed["training"].update(epochs=options.epochs, lr=options.lr or config.training.lr,
                               head_init="keep", fallback_to_probe=False,
                               extend_budget=0)
    changed["evaluation"]["baselines"] = False
    return RunConfig.model_validate(changed)


def retrain(run: Path, options: RetrainOptions) -> RetrainResult:
    from tunelab.rundir import check_run_name
    from tunelab.runner import train_run

    source = Predictor(run, "torch")
    if source.task.feedback_labels() is None or getattr(source.task, "multi_label", False):
        raise ConfigError(f"{run}: retrain supports single-label classification; this is a "
                          f"{source.task.name} model")
    if source.meta.get("method") != "full":
        raise ConfigError(f"{run}: retrain continues full fine-tuning runs; this one used "
                          f"'{source.meta.get('method')}'")
    config = source.run_config()
    if config.data.test is None or not Path(config.data.test).is_file():
        raise DataError(f"{run}: the run has no test file to measure forgetting on")
    rng = random.Random(options.seed)
    old_train = read_examples(source.task, config.data.train, config)
    old_test = read_examples(source.task, config.data.test, config)
    fresh = new_examples(source, config, options)
    keep, held = split(len(fresh), options.holdout, rng)
    new_train, new_held = fresh.subset(keep), fresh.subset(held)
    fit, dev_part = split(len(new_train), 0.1, rng)
    old_order = list(range(len(old_train)))
    rng.shuffle(old_order)
    n_rehearse = min(len(old_train) - len(dev_part), round(options.rehearsal * len(fit)))
    rehearsal = old_train.subset(sorted(old_order[:n_rehearse]))
    old_dev = old_train.subset(sorted(old_order[n_rehearse:n_rehearse + len(dev_part)]))
    fresh_labels = fresh.labels  # type: ignore[attr-defined]
    labels = list(source.labels) + sorted(set(fresh_labels) - set(source.labels))

    name = options.name if options.name is not None else f"{source.run_dir.name}-retrain"
    try:
        check_run_name(name)
    except ValueError as error:
        raise ConfigError(f"--name: {error}") from None
    out = Path(config.output_dir) / name
    check_target(out, options.overwrite)
    if options.without_rehearsal:
        check_target(out.with_name(f"{name}-norehearsal"), options.overwrite)
    data_dir = Path(config.output_dir) / f"{name}-data"
    from tunelab.store.audit import record_event

    record_event("retrain.started", str(source.run_dir.resolve()), run=name,
                 new_examples=len(fresh))
    start = source.model_dir
    if len(labels) > len(source.labels):
        calibration = concat(new_train.subset(fit), old_train.subset(
            sorted(rng.sample(range(len(old_train)), min(len(old_train), len(fit))))))
        start = grown_start(source, labels, calibration, data_dir / "grown-model")

    def train_variant(variant: str, train: Examples) -> Predictor:
        splits = {"train": kept(train, data_dir / f"{variant}-train.csv", config),
                  "dev": kept(concat(new_train.subset(dev_part), old_dev),
                              data_dir / f"{variant}-dev.csv", config)}
        variant_cfg = variant_config(config, variant, start, labels, {
            role: Path(examples.source) for role, examples in splits.items()}, options)
        train_run(variant_cfg, overwrite=options.overwrite, data=splits)
        return Predictor(Path(config.output_dir) / variant, "torch")

    metric = source.task.default_metric

    def scored(model: Predictor) -> dict[str, float]:
        return {"old_test": float(model.score(old_test).metrics[metric]),
                "new_holdout": accuracy(model, new_held)}

    scores = {"before": scored(source)}
    if start != source.model_dir:
        scores["grown_head"] = scored(Predictor(start, "torch"))
    before_old = scores["before"]["old_test"]
    variants = {"with_rehearsal": (name, concat(new_train.subset(fit), rehearsal))}
    if options.without_rehearsal:
        variants["without_rehearsal"] = (f"{name}-norehearsal", new_train.subset(fit))
    for key, (variant, train) in variants.items():
        scores[key] = scored(train_variant(variant, train))

    after = scores["with_rehearsal"]
    drop = (before_old - after["old_test"]) * 100
    reasons = []
    if drop > options.tolerance:
        reasons.append(f"the original test {metric} dropped {drop:.2f} pt (tolerance "
                       f"{options.tolerance} pt): the model forgot")
    if not after["new_holdout"] > scores["before"]["new_holdout"]:
        reasons.append(f"accuracy on the held-back new examples did not improve "
                       f"({scores['before']['new_holdout']:.4f} -> {after['new_holdout']:.4f})")
    promoted = not reasons and options.promote
    if promoted:
        from tunelab.store.records import promote

        promote(str(out), force=True)  # retrain's own gate has just decided
    report = {"source": str(source.run_dir), "run": str(out), "metric": metric,
              "new_examples": len(fresh), "new_train": len(fit), "new_held_back": len(new_held),
              "rehearsal_examples": len(rehearsal), "labels_added": labels[len(source.labels):],
              "scores": scores, "old_test_drop_pts": round(drop, 3), "promoted": promoted,
              "reasons": reasons, "options": options.model_dump(mode="json")}
    write_json(out / "retrain.json", report)
    write_text(out / "retrain.md", retrain_markdown(report))
    return RetrainResult(out, promoted, reasons, scores)


def retrain_markdown(report: dict[str, Any]) -> str:
    metric = report["metric"]
    lines = [f"# Retrain of {report['source']}", "",
             f"{report['new_examples']} new examples: {report['new_train']} trained on, "
             f"{report['new_held_back']} held back; {report['rehearsal_examples']} original "
             f"examples rehearsed. Labels added: {', '.join(report['labels_added']) or 'none'}.",
             "", f"| model | original test {metric} | held-back new accuracy |", "|---|---|---|"]
    for key, row in report["scores"].items():
        lines.append(f"| {key.replace('_', ' ')} | {row['old_test']:.4f} | "
                     f"{row['new_holdout']:.4f} |")
    verdict = ("Promoted to production." if report["promoted"] else
               "Kept as a candidate: " + "; ".join(report["reasons"] or ["--no-promote"]))
    return "\n".join([*lines, "", verdict]) + "\n"
