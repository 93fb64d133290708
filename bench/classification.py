"""Text-classification accuracy benchmark on the full real datasets.

    python bench/classification.py                 # every experiment below
    python bench/classification.py sst2_full       # one of them

Each experiment is a normal tunelab run (its directory under bench/work/runs); the figures
come from that run's metrics.json. Results: bench/RESULTS.md and bench/results.json.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from common import (
    DATASETS,
    save_row,
    saved_rows,
    timing_footer,
    train_experiment,
    update_results,
    update_section,
)

SST2 = {"train": f"{DATASETS}/sst2/train.tsv", "dev": f"{DATASETS}/sst2/dev.tsv",
        "test": f"{DATASETS}/sst2/test.tsv", "text_column": "sentence", "label_column": "label"}
BANKING = {"train": f"{DATASETS}/banking77/train.csv", "test": f"{DATASETS}/banking77/test.csv",
           "text_column": "text", "label_column": "category"}

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "sst2_full": {
        "data": SST2, "method": "full",
        "training": {"epochs": 2, "lr": 5e-5, "batch_size": 32, "eval_every": 400,
                     "early_stopping": {"patience": 4}},
        "target": 0.90, "key": "sst2_full_test_acc", "seconds_key": "sst2_full_train_seconds",
    },
    "sst2_lora": {
        "data": SST2, "method": {"name": "lora", "r": 16, "alpha": 32,
                                 "target_modules": "all-linear"},
        "training": {"epochs": 1, "lr": 5e-4, "batch_size": 32, "eval_every": 400,
                     "early_stopping": {"patience": 4}},
        "target": 0.89, "key": "sst2_lora_test_acc",
    },
    "banking77_full": {
        "data": BANKING, "method": "full",
        "training": {"epochs": 12, "lr": 1e-4, "batch_size": 32,
                     "early_stopping": {"patience": 3}},
        "target": 0.92, "key": "banking77_full_test_acc",
    },
}


def run(name: str) -> dict[str, Any]:
    spec = EXPERIMENTS[name]
    metrics = train_experiment(name, {
        "data": spec["data"], "method": spec["method"], "training": spec["training"],
        "evaluation": {"probe_max_examples": 4000},
    }).metrics
    row = {
        "experiment": name, "accuracy": metrics["test"]["accuracy"],
        "f1_macro": metrics["test"]["f1_macro"], "target": spec["target"],
        "probe": metrics["baselines"]["probe"]["accuracy"],
        "majority": metrics["baselines"]["majority"]["accuracy"],
        "seconds": metrics["train"]["seconds"], "epochs": metrics["train"]["epochs"],
        "samples_per_second": metrics["train"]["samples_per_second"],
        "peak_rss_mb": metrics["peak_rss_mb"], "train_size": metrics["sizes"]["train"],
        "trainable": metrics["train"]["trainable_parameters"],
    }
    save_row(name, row)
    values = {spec["key"]: round(row["accuracy"], 4)}
    if "seconds_key" in spec:
        values[spec["seconds_key"]] = round(row["seconds"], 1)
    update_results(values)
    return row


def write_section() -> None:
    rows = saved_rows(list(EXPERIMENTS))
    lines = [
        "## Text classification (`python bench/classification.py`)",
        "",
        "MiniLM-L6 (packaged `minilm-l6`), trained on the full training set, early stopping on",
        "dev, scored on the test file. Baselines on the same test set: majority class and the",
        "frozen encoder with a logistic-regression head (4000 training examples).",
        "",
        "| experiment | test acc | target | macro F1 | probe acc | majority | epochs | train s "
        "| samples/s | peak RSS MB | trainable params |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "yes" if r["accuracy"] >= r["target"] else "no"
        lines.append(
            f"| {r['experiment']} | {r['accuracy']:.4f} | {r['target']:.2f} ({met}) | "
            f"{r['f1_macro']:.4f} | {r['probe']:.4f} | {r['majority']:.4f} | {r['epochs']:.2f} | "
            f"{r['seconds']:.0f} | {r['samples_per_second']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['trainable']:,} |")
    lines += ["", timing_footer()]
    update_section("classification", "\n".join(lines))


if __name__ == "__main__":
    for experiment in sys.argv[1:] or list(EXPERIMENTS):
        print(json.dumps(run(experiment)), flush=True)
        write_section()
