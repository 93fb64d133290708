"""The model card written as README.md in a run directory."""

from __future__ import annotations

from typing import Any

from tunelab.config import RunConfig
from tunelab.evaluation.summary import comparison_table


def model_card(config: RunConfig, summary: dict[str, Any], rows: dict[str, dict[str, float]],
               per_class: str) -> str:
    train = summary["train"]
    labels = summary["labels"]
    shown = ", ".join(labels[:20]) + (f" ... ({len(labels)} in all)" if len(labels) > 20 else "")
    fingerprints = "\n".join(f"| {split} | {source} | `{summary['fingerprints'].get(split, '-')[:16]}` |"
                             for split, source in summary["sources"].items())
    return f"""# {config.name}

A {summary['task']} model fine-tuned with tunelab from `{config.model.name}`.

## Model
- Base model: `{config.model.name}`
- Method: `{config.method.name}`; {train['trainable_parameters']:,} of {train['total_parameters']:,} parameters trained
- Labels ({len(labels)}): {shown}
- {"Multi-label: sigmoid scores, threshold " + str(config.task.threshold) if config.task.multi_label else "Single-label: softmax over the labels"}
- Inputs are truncated to {config.data.max_length} tokens.

## Training data
| split | source | sha256 |
|---|---|---|
{fingerprints}

Sizes: train {summary['sizes']['train']}, dev {summary['sizes']['dev']}, test {summary['sizes']['test']}.
Seed {config.seed}; learning rate {summary['lr']}; up to {config.training.epochs} epochs with early stopping on dev `{summary['metric']}`.
Training took {train['seconds']:.1f} s ({train['samples_per_second']:.1f} samples/s) on {summary['hardware']}.

## Evaluation (test split)
```
{comparison_table(rows)}
```

```
{per_class.rstrip()}
```

## Intended use
Classifying short texts like those in the training data into the labels above. Check the
per-class report before relying on a label with few training examples.

## Limits
- The model knows only the labels above; every input gets one of them{" or none" if config.task.multi_label else ""}, also when it fits none.
- Scores hold for data like the test split. Texts from another domain, language or period
  may score lower; evaluate on your own data with `tunelab eval`.
- Biases of the base model `{config.model.name}` and of the training data carry over.
- Text beyond {config.data.max_length} tokens is not seen.
"""
