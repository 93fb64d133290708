"""Continual learning on Banking77: new intents arrive after deployment.

    python bench/continual.py            # about 12 minutes

1. Train MiniLM-L6 on Banking77 with 10 intents held out (test: the other 67 intents).
2. Feed the training examples of the 10 held-out intents as new data (`tunelab retrain
   --data`), with rehearsal of the original data and without.
3. Score old-intent and new-intent accuracy on the real Banking77 test set, before and after.
Results: bench/RESULTS.md ("Continual learning") and bench/results.json.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section

HELD_OUT = 10
REHEARSAL = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
DATA = WORK / "continual"


def rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(r["text"], r["category"]) for r in csv.DictReader(handle)]


def write(path: Path, data: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows(data)
    return path


def accuracy(predictor: Any, data: list[tuple[str, str]]) -> float:
    from tunelab.retrain import accuracy as examples_accuracy
    from tunelab.tasks.text_classification import TextExamples

    texts, labels = [t for t, _ in data], [label for _, label in data]
    return examples_accuracy(predictor, TextExamples("bench", [], texts, None, labels))


def main() -> None:
    import tunelab
    from tunelab.config import parse_config
    from tunelab.predictor import Predictor
    from tunelab.retrain import RetrainOptions, retrain

    train, test = rows(DATASETS / "banking77/train.csv"), rows(DATASETS / "banking77/test.csv")
    intents = sorted({label for _, label in train})
    new = set(random.Random(77).sample(intents, HELD_OUT))
    old_train = [r for r in train if r[1] not in new]
    new_train = [r for r in train if r[1] in new]
    old_test = [r for r in test if r[1] not in new]
    new_test = [r for r in test if r[1] in new]
    files = {"train": write(DATA / "old_train.csv", old_train),
             "test": write(DATA / "old_test.csv", old_test)}
    new_file = write(DATA / "new_intents.csv", new_train)

    config = parse_config({
        "name": "b77_old", "output_dir": str(WORK / "runs"), "seed": 42,
        "data": {"train": str(files["train"]), "test": str(files["test"]),
                 "label_column": "category", "dev_fraction": 0.05},
        "training": {"epochs": 4, "lr": 1e-4, "early_stopping": {"enabled": False}},
        "evaluation": {"baselines": False},
    }, "bench:continual")
    base = tunelab.train(config, overwrite=True).run_dir
    before = Predictor(base, "torch")
    scores = {"before": {"old": accuracy(before, old_test), "new": accuracy(before, new_test)}}
    result = retrain(base, RetrainOptions(data=new_file, rehearsal=REHEARSAL, epochs=3,
                                          lr=5e-5, without_rehearsal=True, name="b77_retrain",
                                          promote=False))
    for key, run in (("with_rehearsal", result.run_dir),
                     ("without_rehearsal", result.run_dir.with_name("b77_retrain-norehearsal"))):
        model = Predictor(run, "torch")
        scores[key] = {"old": accuracy(model, old_test), "new": accuracy(model, new_test)}
    report = json.loads((result.run_dir / "retrain.json").read_text())
    drop = {k: round((scores["before"]["old"] - scores[k]["old"]) * 100, 2)
            for k in ("with_rehearsal", "without_rehearsal")}
    lines = ["## Continual learning (`bench/continual.py`)", "",
             f"Machine: {machine_line()}. Banking77: MiniLM-L6 trained 4 epochs (lr 1e-4) on "
             f"the {len(intents) - HELD_OUT} old intents ({len(old_train)} examples); then "
             f"`tunelab retrain --data` with the {len(new_train)} training examples of "
             f"{HELD_OUT} new intents, 3 epochs at lr 5e-5, rehearsal ratio {REHEARSAL} "
             f"({report['rehearsal_examples']} original examples). Accuracy on the Banking77 "
             f"test set: {len(old_test)} old-intent and {len(new_test)} new-intent examples.",
             "", "| model | old-intent accuracy | change | new-intent accuracy |",
             "|---|---|---|---|"]
    for key, row in scores.items():
        change = "-" if key == "before" else f"{-drop[key]:+.2f} pt"
        lines.append(f"| {key.replace('_', ' ')} | {row['old']:.4f} | {change} | "
                     f"{row['new']:.4f} |")
    lines += ["", f"Promotion gate (tolerance 1 pt, new data must improve): "
              f"{'passes' if not report['reasons'] else '; '.join(report['reasons'])}."]
    markdown = "\n".join(lines)
    print(markdown)
    update_section("continual", markdown)
    update_results({"rehearsal_old_intent_drop_pts": drop["with_rehearsal"],
                    "rehearsal_new_intent_acc": round(scores["with_rehearsal"]["new"], 4),
                    "no_rehearsal_old_intent_drop_pts": drop["without_rehearsal"]})
    (WORK / "continual.json").write_text(json.dumps({"scores": scores, "report": report},
                                                    indent=2))


if __name__ == "__main__":
    main()
