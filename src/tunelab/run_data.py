"""A run's data: read its files into task examples, build the task from the training
examples, and make any missing dev or test split.

Everything here runs before the run directory is touched, so bad data stops a run
without leaving anything behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab import registry
from tunelab.config import RunConfig
from tunelab.data.examples import Examples
from tunelab.data.readers import ReaderOptions, read_table
from tunelab.data.splits import rare_labels, split_indices
from tunelab.errors import DataError
from tunelab.privacy.examples import mask_examples
from tunelab.tasks.base import Task


@dataclass
class Splits:
    train: Any
    dev: Any
    test: Any
    sources: dict[str, str]  # split -> where it came from


def read_examples(task: type[Task] | Task, path: Path, config: RunConfig) -> Any:
    """A file's examples, with personal data masked when `data.mask_pii` asks for it."""
    options = ReaderOptions(header=config.data.header, tag_column=config.data.tag_column)
    examples = task.examples_from_table(read_table(path, config.data.format, options), config)
    masking = config.data.mask_pii
    return mask_examples(examples, masking) if masking is not None else examples


def load_splits(config: RunConfig, given: dict[str, Examples] | None = None
                ) -> tuple[Task, Splits]:
    """The task (built from the training examples) and the three splits. `given` holds
    splits already in memory (by name: train, dev, test), used instead of the files."""
    data, given = config.data, given or {}
    task_cls = registry.tasks.get(config.task.type)
    if data.train is None and "train" not in given:
        return _without_training_data(config, task_cls)
    train = given["train"] if "train" in given else read_examples(task_cls, data.train, config)
    task = task_cls.from_config(config, train)
    sources = {"train": train.source if "train" in given else str(data.train)}
    held: dict[str, Any] = {}
    unevaluated: dict[str, int] = {}
    for role, path, fraction in (("test", data.test, data.test_fraction),
                                 ("dev", data.dev, data.dev_fraction)):
        if role in given or path is not None:
            held[role] = given[role] if role in given else read_examples(task, path, config)
            task.check_examples(held[role], sources["train"])
            sources[role] = held[role].source if role in given else str(path)
        else:
            strata = task.strata(train)
            rare = rare_labels(strata) if strata is not None else {}
            keep, out = split_indices(len(train), fraction, config.seed, strata,
                                      str(data.train), role)
            held[role] = train.subset(out)
            train = train.subset(keep)
            how = "stratified, " if strata is not None else ""
            sources[role] = f"{fraction:.0%} of {data.train} ({how}seed {config.seed})"
            if rare:
                sources[role] += f"; kept out of it (a single example): {', '.join(rare)}"
                unevaluated.update(rare)
    if unevaluated:
        logging.getLogger("tunelab").warning(
            "%s: %d label(s) have too few examples to hold any out: %s. They are trained on "
            "but not evaluated; add examples to evaluate them", data.train, len(unevaluated),
            ", ".join(unevaluated))
    task.check_splits(train, held["dev"], held["test"])
    if data.examples_per_class is not None:
        train = per_class_sample(task, train, data.examples_per_class, config.seed,
                                 sources["train"])
        sources["train"] += f" ({data.examples_per_class} a label, seed {config.seed})"
    return task, Splits(train, held["dev"], held["test"], sources)


def per_class_sample(task: Task, train: Any, n: int, seed: int, source: str) -> Any:
    """A seeded sample of `n` training examples of each label (data.examples_per_class),
    drawn after dev and test are held out."""
    import numpy as np

    strata = task.strata(train)
    if strata is None:
        raise DataError(f"data.examples_per_class: samples single-label text classification "
                        f"examples by label; {task.name} has no one label per example; "
                        "remove examples_per_class")
    by_label: dict[Any, list[int]] = {}
    for i, label in enumerate(strata):
        by_label.setdefault(label, []).append(i)
    label, smallest = min(by_label.items(), key=lambda item: len(item[1]))
    if len(smallest) < n:
        raise DataError(f"data.examples_per_class: {n} is more than the {len(smallest)} "
                        f"training examples of label '{label}' in {source} (after dev and "
                        f"test are held out); set it to at most {len(smallest)}")
    rng = np.random.default_rng(seed)
    keep = sorted(i for indices in by_label.values()
                  for i in rng.choice(indices, n, replace=False).tolist())
    return train.subset(keep)


def _without_training_data(config: RunConfig, task_cls: type[Task]) -> tuple[Task, Splits]:
    """A method that learns nothing (zero-shot): labels from the config, scored on the
    labelled test (or dev) file. With one file, dev is the test file: nothing is chosen on
    it, and the run fits no calibration there."""
    data = config.data
    files = {role: path for role, path in (("test", data.test), ("dev", data.dev)) if path}
    held = {role: read_examples(task_cls, path, config) for role, path in files.items()}
    none = next(iter(held.values())).subset([])  # no training examples, in the task's type
    task = task_cls.from_config(config, none)
    sources = {"train": "none: the method learns from no examples"}
    for role, examples in held.items():
        task.check_examples(examples, "task.labels")
        sources[role] = str(files[role])
    for role, other in (("test", "dev"), ("dev", "test")):
        if role not in held:
            held[role] = held[other]
            sources[role] = f"{files[other]} (no {role} file given: the {other} file)"
    task.check_splits(none, held["dev"], held["test"])
    return task, Splits(none, held["dev"], held["test"], sources)
