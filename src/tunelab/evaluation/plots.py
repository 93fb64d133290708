"""Figures written as PNG: training curves, and a helper that saves any figure atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tunelab.rundir import atomic_path


def save_figure(path: Path, draw: Callable[[Any], None]) -> None:
    fig = plt.figure()
    try:
        draw(fig)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def plot_curves(fig: Any, log_history: list[dict[str, Any]], metric: str,
                references: dict[str, float] | None = None,
                extended_after: int | None = None) -> None:
    """Training loss, dev loss and the dev metric against the optimizer step, with
    `references` (the baselines' scores, named) as dashed lines beside the metric, and
    where the run trained on past its plan (`extended_after`, training/extend.py)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    dev_loss = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    dev_metric = [(e["step"], e[f"eval_{metric}"]) for e in log_history if f"eval_{metric}" in e]
    fig.set_size_inches(11, 4.2)
    left, right = fig.subplots(1, 2)
    if train:
        left.plot(*zip(*train, strict=True), label="train loss", alpha=0.8)
    if dev_loss:
        left.plot(*zip(*dev_loss, strict=True), "o-", label="dev loss")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title("Loss")
    left.grid(alpha=0.3)
    if train or dev_loss:
        left.legend()
    if dev_metric:
        right.plot(*zip(*dev_metric, strict=True), "o-", color="tab:green", label=f"dev {metric}")
        step, value = max(dev_metric, key=lambda point: point[1])
        right.plot([step], [value], "*", color="tab:green", markersize=14,
                   label=f"best {value:.4f} (step {step})")
    styles = iter([("tab:gray", "--"), ("tab:red", ":"), ("tab:purple", "-.")])
    for name, value in (references or {}).items():
        color, line = next(styles, ("black", "--"))
        right.axhline(value, color=color, linestyle=line, label=f"{name}: {value:.4f}")
    if extended_after:
        for axes in (left, right):
            axes.axvline(extended_after, color="tab:orange", linestyle=":", linewidth=1,
                         label="trained on past the plan" if axes is right else None)
    right.set_xlabel("step")
    right.set_ylabel(metric)
    right.set_title(f"Dev {metric}")
    right.grid(alpha=0.3)
    if dev_metric or references:
        right.legend(loc="best", fontsize=8)
    fig.tight_layout()
