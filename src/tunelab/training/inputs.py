"""Read a run's data files into task examples, and make any missing dev or test split.

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
from tunelab.data.readers import ReaderOptions, read_table
from tunelab.data.splits import rare_labels, split_indices
from tunelab.errors import DataError
from tunelab.tasks.base import Task


@dataclass
class Splits:
    train: Any
    dev: Any
    test: Any
    sources: dict[str, str]  # split -> where it came from


def read_examples(task: Task, path: Path, config: RunConfig) -> Any:
    options = ReaderOptions(header=config.data.header, tag_column=config.data.tag_column)
    return task.examples_from_table(read_table(path, config.data.format, options), config)


def load_splits(config: RunConfig) -> tuple[Task, Splits]:
    """The task (with its label set from the training file) and the three splits."""
    data = config.data
    task = registry.tasks.get(config.task.type).from_config(config)
    train = read_examples(task, data.train, config)
    task.labels = task.label_set(train)
    if config.task.labels is not None:
        missing = [label for label in task.labels if label not in config.task.labels]
        if missing:
            raise DataError(f"{data.train}: labels {', '.join(missing)} are not in task.labels; "
                            "add them to the list or remove the examples")
        task.labels = list(config.task.labels)
    if len(task.labels) < 2:
        found = f"'{task.labels[0]}'" if task.labels else "none"
        raise DataError(f"{data.train}: only one label in the training data ({found}); a "
                        "model needs examples of at least two labels to learn to tell apart")
    sources = {"train": str(data.train)}
    held: dict[str, Any] = {}
    unevaluated: dict[str, int] = {}
    for role, path, fraction in (("test", data.test, data.test_fraction),
                                 ("dev", data.dev, data.dev_fraction)):
        if path is not None:
            held[role] = read_examples(task, path, config)
            task.check_labels(held[role], str(data.train))
            sources[role] = str(path)
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
    return task, Splits(train, held["dev"], held["test"], sources)
