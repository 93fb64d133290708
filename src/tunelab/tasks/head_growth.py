"""Grow a trained classifier's head to new labels, with the new rows fitted before
fine-tuning starts (linear probing, then fine-tuning: Kumar et al., 2022).

Fresh rows start near zero while the old rows are large, so a short continued fine-tune
barely moves predictions towards the new labels and mostly disturbs the encoder. Here the
new rows are first imprinted from the class means of the model's own head features (Qi et
al., 2018), then fitted by class-balanced logistic regression against the fixed old rows,
on the new examples plus a sample of old ones. The encoder and the old rows are unchanged,
so the grown model predicts old labels as before wherever the new rows do not win.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.rundir import MODEL_META, write_json

PROBE_STEPS = 300
PROBE_WEIGHT_DECAY = 1e-4


def output_layer(model: nn.Module, n_labels: int) -> tuple[str, nn.Linear]:
    """The head's last projection: the last Linear with one output row per label."""
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and module.out_features == n_labels]
    if not found:
        raise ModelError(f"no linear layer with {n_labels} outputs in the model's head; "
                         "cannot add labels to this architecture")
    return found[-1]


def copy_label_rows(target: torch.Tensor, source: torch.Tensor, old_labels: Sequence[str],
                    labels: Sequence[str]) -> None:
    """Copy the rows of `source` (one per old label) into `target` (one per label) for the
    labels both lists share, by name. Rows of new labels are left as they are. This is the one
    way a head is extended: continuing a run with more labels, and retrain's grown head."""
    index = {label: i for i, label in enumerate(old_labels)}
    with torch.no_grad():
        for row, label in enumerate(labels):
            if label in index:
                target[row] = source[index[label]]


def carry_head_rows(model: nn.Module, source: str, labels: Sequence[str]) -> bool:
    """When `source` is a trained tunelab model with another label list, copy its head's
    rows for the labels both share, so continuing it keeps what it knew; rows of new labels
    stay freshly initialised. Returns whether rows were carried."""
    import json

    meta, weights = Path(source) / MODEL_META, Path(source) / "model.safetensors"
    if not meta.is_file() or not weights.is_file():
        return False
    old = json.loads(meta.read_text(encoding="utf-8")).get("labels", [])
    if list(old) == list(labels):
        return False
    from safetensors.torch import load_file

    saved = load_file(weights)
    carried = False
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    for name, parameter in model.named_parameters():
        before = saved.get(name)
        if (not name.startswith(prefix) and before is not None
                and before.shape[0] == len(old) and parameter.shape[0] == len(labels)
                and before.shape[1:] == parameter.shape[1:]):
            copy_label_rows(parameter, before, old, labels)
            carried = True
    return carried


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attribute, module)


@contextmanager
def head_inputs(model: nn.Module, n_labels: int) -> Iterator[None]:
    """While active, the model's logits are the inputs of its output layer."""
    name, layer = output_layer(model, n_labels)
    set_module(model, name, nn.Identity())
    try:
        yield
    finally:
        set_module(model, name, layer)


def fit_new_rows(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, new_rows: Sequence[int]) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """Weights and biases of `new_rows`, fitted with every other row held fixed.

    Classes are weighted by inverse frequency, so the new rows' biases reflect equal priors
    rather than the sampling ratio of new to old examples."""
    fitted = set(new_rows)
    old_rows = [row for row in range(weight.shape[0]) if row not in fitted]
    scale = weight[old_rows].norm(dim=1).mean()
    prototypes = torch.stack([features[targets == row].mean(0) for row in new_rows])
    new_weight = (prototypes / prototypes.norm(dim=1, keepdim=True) * scale).requires_grad_()
    new_bias = bias[old_rows].mean().repeat(len(new_rows)).requires_grad_()
    counts = torch.bincount(targets, minlength=weight.shape[0]).float()
    class_weight = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), 0.0)
    index = torch.tensor(list(new_rows))
    # The problem is convex in the new rows, so L-BFGS runs it to its optimum whatever the
    # scale of the old rows (a fine-tuned head's rows may have norm 0.1 or 30, and a fixed
    # first-order step suits only one of them).
    optimiser = torch.optim.LBFGS([new_weight, new_bias], max_iter=PROBE_STEPS,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        full_weight = weight.index_copy(0, index, new_weight)
        full_bias = bias.index_copy(0, index, new_bias)
        loss = (nn.functional.cross_entropy(features @ full_weight.T + full_bias, targets,
                                            weight=class_weight)
                + PROBE_WEIGHT_DECAY * new_weight.square().sum() / scale.square())
        loss.backward()
        return loss

    optimiser.step(closure)
    return new_weight.detach(), new_bias.detach()


def grow_head(model: nn.Module, old_labels: Sequence[str], labels: Sequence[str],
              features: torch.Tensor, targets: Sequence[str]) -> nn.Module:
    """A copy of `model` whose head scores `labels` (the old ones first, in order).

    `features` are the head inputs of `model` for examples labelled `targets`; every new
    label needs at least one example."""
    if list(labels[:len(old_labels)]) != list(old_labels):
        raise ModelError("the grown label list must start with the model's own labels")
    index = {label: i for i, label in enumerate(labels)}
    new_rows = list(range(len(old_labels), len(labels)))
    missing = [labels[row] for row in new_rows if labels[row] not in set(targets)]
    if missing:
        raise ModelError(f"no examples of the new label(s) {', '.join(missing)}")
    name, layer = output_layer(model, len(old_labels))
    grown = copy.deepcopy(model)
    weight = torch.cat([layer.weight.detach(), layer.weight.new_zeros(len(new_rows),
                                                                       layer.in_features)])
    bias = (torch.cat([layer.bias.detach(), layer.bias.new_zeros(len(new_rows))])
            if layer.bias is not None else weight.new_zeros(len(labels)))
    with torch.enable_grad():
        new_weight, new_bias = fit_new_rows(
            features.float(), torch.tensor([index[t] for t in targets]), weight, bias, new_rows)
    projection = nn.Linear(layer.in_features, len(labels), bias=layer.bias is not None)
    copy_label_rows(projection.weight, layer.weight, old_labels, labels)
    with torch.no_grad():
        projection.weight[new_rows] = new_weight
    if projection.bias is not None and layer.bias is not None:
        copy_label_rows(projection.bias, layer.bias, old_labels, labels)
        with torch.no_grad():
            projection.bias[new_rows] = new_bias
    set_module(grown, name, projection)
    grown.config.num_labels = len(labels)
    grown.config.id2label = dict(enumerate(labels))
    grown.config.label2id = index
    return grown


def save_grown(model: nn.Module, tokenizer: object, meta: dict[str, object],
               labels: Sequence[str], directory: Path) -> Path:
    """Write the grown model where training can start from it like any local model."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]
    write_json(directory / MODEL_META, {**meta, "labels": list(labels)})
    return directory
