"""Linear probing, then fine-tuning (LP-FT: Kumar et al., ICLR 2022).

Before training, a logistic regression is fitted on the inputs of the model's own output
layer (the pretrained encoder's features, as the head reads them, with dropout on as in
training) and written into that layer. Fine-tuning then starts from a head that already
separates the classes, instead of a random one whose first, large gradients distort the
pretrained features.

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


def start_from_probe(config: RunConfig, task: Any, model: nn.Module, tokenizer: Any,
                     splits: Splits, dev_set: Any, metric: str) -> Probe | None:
    """Fit the probe, score it on dev (and on test, as a baseline), and make it the head
    that fine-tuning starts from (training.head_init: probe) where the head is new."""
    t = config.training
    wanted = t.head_init == "probe" or t.fallback_to_probe or config.evaluation.baselines
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
    starts = config.training.head_init == "probe" and getattr(model, "tunelab_new_head", True)
    if starts:
        install(model, probe.start, n_labels)
    log.info("linear probe on the frozen encoder: dev %s %.4f%s", metric, probe.dev,
             "; fine-tuning starts from it" if starts else "")
    return probe


def probe_model(task: Any, resolved: ResolvedModel, dropout: float | None,
                probe: Probe) -> nn.Module:
    """The probe as a complete model: the pretrained encoder with the probe as its head."""
    model = task.build_model(resolved, dropout)
    install(model, probe.head, len(task.labels))
    return model
