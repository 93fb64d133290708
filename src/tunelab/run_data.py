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
from tunelab.tasks.base import Task


@dataclass
class Splits:
    train: Any
    dev: Any
    test: Any
    sources: dict[str, str]  # split -> where it came from


def read_examples(task: type[Task] | Task, path: Path, config: RunConfig) -> Any:
    options = ReaderOptions(header=config.data.header, tag_column=config.data.tag_column)
    return task.examples_from_table(read_table(path, config.data.format, options), config)


def load_splits(config: RunConfig, given: dict[str, Examples] | None = None
                ) -> tuple[Task, Splits]:
    """The task (built from the training examples) and the three splits. `given` holds
    splits already in memory (by name: train, dev, test), used instead of the files."""
    data, given = config.data, given or {}
    task_cls = registry.tasks.get(config.task.type)
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
    return task, Splits(train, held["dev"], held["test"], sources)
