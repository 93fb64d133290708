"""Linear probing, then fine-tuning (LP-FT: Kumar et al., ICLR 2022).

Before training, a logistic regression is fitted on the inputs of the model's own output
layer (the pretrained encoder's features, as the head reads them, with dropout on as in
training). With many labels (`head_init: auto`) it is written into that layer, and
fine-tuning starts from a head that already separates the classes: a random head over 77
intents learns too slowly at a fine-tuning rate. With few labels the head starts random,
at a learning rate of its own: there the probe fits a small training set so well that
fine-tuning from it has almost no loss left to learn from.

The same probe is the run's strongest baseline: the pretrained encoder with that head is a
complete model, scored on dev as the Trainer scores checkpoints, and on test. When
fine-tuning ends below it on dev, the run ships the probe instead, and says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tunelab.evaluation.calibration import fit_temperature
from tunelab.evaluation.probe import fit_linear_head
from tunelab.tasks.base import EvalResult
from tunelab.tasks.head_growth import head_inputs, output_layer
from tunelab.training.trainer import dev_scores

if TYPE_CHECKING:
    from tunelab.config import RunConfig
    from tunelab.models import ResolvedModel
    from tunelab.run_data import Splits

log = logging.getLogger("tunelab")


@dataclass
class Head:
    weight: torch.Tensor  # (labels, features) of the output layer
    bias: torch.Tensor | None


@dataclass
class Probe:
    head: Head  # fitted on the features as served (dropout off): the baseline model
    # fitted on the features as training sees them (dropout on): fine-tuning starts here
    start: Head
    dev: float = float("nan")  # the probe model's dev metric (the one early stopping uses)
    test: EvalResult | None = None

    def beats(self, dev_metric: float) -> bool:
        """Whether the probe is the better model on dev than one that scored `dev_metric`."""
        return not math.isnan(self.dev) and not math.isnan(dev_metric) and self.dev > dev_metric


def has_probe(task: Any) -> bool:
    return hasattr(task, "probe_data") and bool(getattr(task, "labels", None))


def fit_probe(model: nn.Module, task: Any, tokenizer: Any, train: Any, max_examples: int,
              seed: int) -> Probe:
    """Linear heads fitted on the frozen model's head inputs for a sample of `train`: one on
    the features as served, one on the features under dropout.

    The start is fitted under dropout because dropout shakes the head's inputs by more than
    they differ between examples where the encoder has not learnt the task (a random small
    model collapses them); a head fitted without it is huge there, and fine-tuning from it
    diverged (losses in the hundreds). Under dropout the fit keeps to the directions that
    survive the noise. On MiniLM the two starts scored alike on dev (SST-2 with 200 and
    2,000 examples, Banking77 with 20 a class; one seed: an exploration, in the closing note
    of the defaults issue)."""
    sample = task.probe_sample(train, max_examples, seed)
    heads = []
    for training_mode in (False, True):
        with (head_inputs(model, len(task.labels)), torch.no_grad(),
              dropout_on(model) if training_mode else nullcontext()):
            features = task.logits_for_examples(model, tokenizer, sample)
        x, y = task.probe_data(features, sample)
        weight, bias = fit_linear_head(x.astype(np.float64), y, len(task.labels),
                                       bool(getattr(task, "multi_label", False)), seed)
        dtype = output_layer(model, len(task.labels))[1].weight.dtype
        heads.append(Head(torch.as_tensor(weight, dtype=dtype),
                          torch.as_tensor(bias, dtype=dtype)))
    return Probe(*heads)


@contextmanager
def dropout_on(model: nn.Module) -> Iterator[None]:
    """While active, the model stays in training mode (dropout on), even where code that
    runs it asks for evaluation mode."""
    model.train()
    model.eval = lambda: model  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.eval
        model.eval()


def install(model: nn.Module, head: Head, n_labels: int) -> None:
    """Write `head` into the model's output layer."""
    _, layer = output_layer(model, n_labels)
    with torch.no_grad():
        layer.weight.copy_(head.weight)
        if layer.bias is not None and head.bias is not None:
            layer.bias.copy_(head.bias)


@contextmanager
def head_installed(model: nn.Module, head: Head, n_labels: int) -> Iterator[None]:
    """While active, the model's output layer is `head`; its own weights come back after."""
    _, layer = output_layer(model, n_labels)
    kept = Head(layer.weight.detach().clone(),
                layer.bias.detach().clone() if layer.bias is not None else None)
    install(model, head, n_labels)
    try:
        yield
    finally:
        install(model, kept, n_labels)


# From the defaults study (bench/defaults.py, one seed per cell): a probe start won by 34
# points on Banking77's 77 intents, where a random head learns too slowly; with 2 to 9
# labels (SST-2, AG News, SNIPS, CoNLL tags) a random head at its own learning rate scored
# higher, as a probe that fits a small training set leaves fine-tuning little loss to learn.
PROBE_START_MIN_LABELS = 20
HEAD_LR = 1e-3  # a new random head's learning rate (or the run's, if larger)


def head_start(config: RunConfig, task: Any, model: nn.Module) -> str:
    """Where the output layer starts: `probe`, `calibrated-probe`, `random` (a new head,
    trained at its own rate) or `kept` (a continued model's head, or head_init: keep)."""
    if not getattr(model, "tunelab_new_head", True):
        return "kept"
    choice = config.training.head_init
    if choice == "auto":
        labels = len(getattr(task, "labels", None) or [])
        return "probe" if labels >= PROBE_START_MIN_LABELS else "random"
    return "kept" if choice == "keep" else choice


def head_rate(config: RunConfig, start: str, lr: float) -> float | None:
    """The output layer's learning rate: training.head_lr, else HEAD_LR for a head that
    starts random under head_init: auto; None trains it at the run's rate."""
    if config.training.head_lr:
        return config.training.head_lr
    return max(lr, HEAD_LR) if start == "random" else None


def start_from_probe(config: RunConfig, task: Any, model: nn.Module, tokenizer: Any,
                     splits: Splits, dev_set: Any, metric: str, start: str) -> Probe | None:
    """Fit the probe, score it on dev (and on test, as a baseline), and make it the head
    that fine-tuning starts from when `start` (head_start) says so."""
    t = config.training
    wanted = "probe" in start or t.fallback_to_probe or config.evaluation.baselines
    if not wanted or not has_probe(task):
        return None
    n_labels = len(task.labels)
    probe = fit_probe(model, task, tokenizer, splits.train,
                      config.evaluation.probe_max_examples, config.seed)
    with head_installed(model, probe.head, n_labels):
        probe.dev = float(dev_scores(config, task, model, tokenizer, dev_set)
                          .get(metric, float("nan")))
        if config.evaluation.baselines:
            probe.test = task.evaluate(splits.test,
                                       task.logits_for_examples(model, tokenizer, splits.test))
    if start in ("probe", "calibrated-probe"):
        install(model, probe.start if start == "probe" else
                calibrated(model, task, tokenizer, splits.dev, probe.start), n_labels)
    log.info("linear probe on the frozen encoder: dev %s %.4f; the head starts %s", metric,
             probe.dev, start)
    return probe


def calibrated(model: nn.Module, task: Any, tokenizer: Any, dev: Any, head: Head) -> Head:
    """`head` divided by the temperature that calibrates it on dev (head_init:
    calibrated-probe). A probe that separates a small training set perfectly is far surer
    there than on dev; started as it is, fine-tuning sees almost no loss and the encoder
    barely moves. Calibrated, it keeps its direction and is only as sure as it is right."""
    if getattr(task, "multi_label", False) or not len(dev):
        return head
    with head_installed(model, head, len(task.labels)):
        logits, targets = task.probe_data(task.logits_for_examples(model, tokenizer, dev), dev)
    temperature = fit_temperature(np.asarray(logits, dtype=np.float64), targets)
    log.info("the probe start is divided by its dev temperature %.3g", temperature)
    return Head(head.weight / temperature,
                head.bias / temperature if head.bias is not None else None)


def probe_model(task: Any, resolved: ResolvedModel, dropout: float | None,
                probe: Probe) -> nn.Module:
    """The probe as a complete model: the pretrained encoder with the probe as its head."""
    model = task.build_model(resolved, dropout)
    install(model, probe.head, len(task.labels))
    return model
