"""NER benchmark: MiniLM-L6 on CoNLL-2003 (train on train, early-stop on valid, test on test).

    python bench/ner.py                  # full fine-tuning and LoRA
    python bench/ner.py conll2003_full   # one of them

Results: bench/RESULTS.md (section "ner") and bench/results.json.
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

CONLL = {"train": f"{DATASETS}/conll2003/train.txt", "dev": f"{DATASETS}/conll2003/valid.txt",
         "test": f"{DATASETS}/conll2003/test.txt", "max_length": 128}
TYPES = ("PER", "LOC", "ORG", "MISC")

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "conll2003_full": {
        "method": "full", "key": "conll2003_full_test_f1", "target": 0.88,
        "training": {"epochs": 3, "lr": 1e-4, "batch_size": 16, "eval_every": 400,
                     "early_stopping": {"patience": 4}},
    },
    "conll2003_lora": {
        "method": {"name": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"},
        "key": "conll2003_lora_test_f1", "target": None,
        "training": {"epochs": 2, "lr": 1e-3, "batch_size": 16, "eval_every": 400,
                     "early_stopping": {"patience": 4}},
    },
}


def run(name: str) -> dict[str, Any]:
    spec = EXPERIMENTS[name]
    result = train_experiment(name, {
        "task": {"type": "token-classification"}, "data": CONLL,
        "method": spec["method"], "training": spec["training"],
        "evaluation": {"probe_max_examples": 2000},
    })
    metrics = result.metrics
    history = json.loads((result.run_dir / "log_history.json").read_text())
    row = {
        "experiment": name, "f1": metrics["test"]["f1"], "target": spec["target"],
        "precision": metrics["test"]["precision"], "recall": metrics["test"]["recall"],
        "token_accuracy": metrics["test"]["token_accuracy"],
        "per_type": {t: metrics["test"].get(f"f1_{t}", 0.0) for t in TYPES},
        "probe_f1": metrics["baselines"]["probe"]["f1"],
        "seconds": metrics["train"]["seconds"], "epochs": metrics["train"]["epochs"],
        "samples_per_second": metrics["train"]["samples_per_second"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "trainable": metrics["train"]["trainable_parameters"],
        "curve": [(e["epoch"], e["eval_f1"]) for e in history if "eval_f1" in e],
    }
    save_row(name, row)
    update_results({spec["key"]: round(row["f1"], 4)})
    return row


def write_section() -> None:
    rows = saved_rows(list(EXPERIMENTS))
    lines = [
        "## NER (`python bench/ner.py`)",
        "",
        "MiniLM-L6 (packaged, uncased) on CoNLL-2003: trained on train (14,041 sentences),",
        "early stopping on valid, entity-level F1 (seqeval, strict IOB2) on test. The probe is",
        "the frozen encoder with a logistic-regression tagger fitted on 2000 sentences.",
        "",
        "| experiment | test F1 | target | P | R | " + " | ".join(f"F1 {t}" for t in TYPES)
        + " | probe F1 | epochs | train s | samples/s | peak RSS MB | trainable |",
        "|---" * (11 + len(TYPES)) + "|",
    ]
    for r in rows:
        target = (f"{r['target']:.2f} ({'yes' if r['f1'] >= r['target'] else 'no'})"
                  if r["target"] else "-")
        lines.append(
            f"| {r['experiment']} | {r['f1']:.4f} | {target} | {r['precision']:.4f} | "
            f"{r['recall']:.4f} | " + " | ".join(f"{r['per_type'][t]:.4f}" for t in TYPES)
            + f" | {r['probe_f1']:.4f} | {r['epochs']:.2f} | {r['seconds']:.0f} | "
            f"{r['samples_per_second']:.1f} | {r['peak_rss_mb']:.0f} | {r['trainable']:,} |")
    lines += ["", "Learning curve (dev entity F1 by epoch):", ""]
    for r in rows:
        curve = ", ".join(f"{epoch:.2f}: {f1:.3f}" for epoch, f1 in r["curve"])
        lines.append(f"- {r['experiment']}: {curve}")
    lines += ["", timing_footer()]
    update_section("ner", "\n".join(lines))


if __name__ == "__main__":
    for experiment in sys.argv[1:] or list(EXPERIMENTS):
        print(json.dumps(run(experiment)), flush=True)
        write_section()
