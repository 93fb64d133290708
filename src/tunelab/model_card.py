"""The model card written as README.md in a run directory."""

from __future__ import annotations

from typing import Any

from tunelab.config import RunConfig
from tunelab.evaluation.summary import comparison_table
from tunelab.tasks.base import Task


def model_card(config: RunConfig, task: Task, summary: dict[str, Any],
               rows: dict[str, dict[str, float]], per_class: str) -> str:
    train, sizes, labels = summary["train"], summary["sizes"], summary["labels"]
    shown = ", ".join(labels[:20]) + (f" ... ({len(labels)} in all)" if len(labels) > 20 else "")
    sources = "\n".join(
        f"| {split} | {source} | `{summary['fingerprints'].get(split, '-')[:16]}` |"
        for split, source in summary["sources"].items())
    trained = f"{train['trainable_parameters']:,} of {train['total_parameters']:,}"
    return f"""# {config.name}

A {summary['task']} model fine-tuned with tunelab from `{config.model.name}`.

## Model
- Base model: `{config.model.name}`
- Method: `{config.method.name}`; {trained} parameters trained
- Labels ({len(labels)}): {shown}
- {task.head_description()}
- Inputs are truncated to {config.data.max_length} tokens.

## Training data
| split | source | sha256 (first 16) |
|---|---|---|
{sources}

Sizes: train {sizes['train']}, dev {sizes['dev']}, test {sizes['test']}. Seed {config.seed};
learning rate {summary['lr']}; up to {config.training.epochs} epochs, early stopping on dev
`{summary['metric']}`. Training took {train['seconds']:.1f} s
({train['samples_per_second']:.1f} samples/s) on {summary['hardware']}.

## Evaluation (test split)
```
{comparison_table(rows, task.headline_metrics)}
```

```
{per_class.rstrip()}
```

## Intended use
{task.intended_use}

## Limits
- Scores hold for data like the test split. Texts from another domain, language or period
  may score lower; evaluate on your own data with `tunelab eval`.
- Biases of the base model `{config.model.name}` and of the training data carry over.
- Text beyond {config.data.max_length} tokens is not seen.
"""
