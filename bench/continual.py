"""Continual learning on Banking77: new intents arrive after deployment.

    python bench/continual.py                      # about 15 minutes
    python bench/continual.py --sweep 0.5,1,2,3,5  # also each rehearsal ratio, ~3 min each
    python bench/continual.py --reuse-base         # keep the trained old-intent model
    python bench/continual.py --select 1,2,3,5 --seeds 3   # choose the default on dev (~50 min)

1. Train MiniLM-L6 on Banking77 with 10 intents held out (test: the other 67 intents).
2. Feed the training examples of the 10 held-out intents as new data (`tunelab retrain
   --data`) with retrain's defaults, and again without rehearsal.
3. Score old-intent and new-intent accuracy on the real Banking77 test set, before and after.
   The sweep repeats step 2 at other rehearsal ratios, scored on the test set: it shows,
   it does not choose.
4. --select chooses the default rehearsal ratio without the test set: Banking77's training
   set is split 90/10 per intent (seeded); the base model trains on the 90% of the old
   intents, retrain gets the 90% of the new intents, and each ratio is scored on the 10%
   dev part, over several seeds. The smallest ratio whose mean old-intent drop on dev is
   at most 1 pt is chosen.
Results: bench/RESULTS.md ("Continual learning") and bench/results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section, write_rows

HELD_OUT = 10
DATA = WORK / "continual"
BASE_TRAINING = {"epochs": 4, "lr": 1e-4, "early_stopping": {"enabled": False}}


def rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(r["text"], r["category"]) for r in csv.DictReader(handle)]


def write(path: Path, data: list[tuple[str, str]]) -> Path:
    return write_rows(path, data, ("text", "category"))


def accuracies(run: Path, splits: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    """The run's accuracy on each split, loading the model once."""
    from tunelab.predictor import Predictor
    from tunelab.retrain import accuracy
    from tunelab.tasks.text_classification import TextExamples

    model = Predictor(run, "torch")
    return {name: accuracy(model, TextExamples(name, [], [t for t, _ in data], None,
                                               [label for _, label in data]))
            for name, data in splits.items()}


def train_base(files: dict[str, Path], reuse: bool, name: str = "b77_old") -> Path:
    import tunelab
    from tunelab.config import parse_config

    run = WORK / "runs" / name
    if reuse and (run / "model").is_dir():
        return run
    config = parse_config({
        "name": run.name, "output_dir": str(run.parent), "seed": 42,
        "data": {"train": str(files["train"]), "test": str(files["test"]),
                 "label_column": "category", "dev_fraction": 0.05},
        "training": BASE_TRAINING, "evaluation": {"baselines": False},
    }, "bench:continual")
    return tunelab.train(config, overwrite=True).run_dir


def main() -> None:
    from tunelab.retrain import RetrainOptions, retrain

    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", default="", help="comma-separated rehearsal ratios")
    parser.add_argument("--reuse-base", action="store_true")
    parser.add_argument("--select", default="", help="ratios to choose from, on dev")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.select:
        from continual_select import select_on_dev

        select_on_dev([float(r) for r in args.select.split(",")], args.seeds, args.reuse_base)
        return

    train, test = rows(DATASETS / "banking77/train.csv"), rows(DATASETS / "banking77/test.csv")
    intents = sorted({label for _, label in train})
    new = set(random.Random(77).sample(intents, HELD_OUT))
    old_train = [r for r in train if r[1] not in new]
    new_train = [r for r in train if r[1] in new]
    tests = {"old": [r for r in test if r[1] not in new], "new": [r for r in test if r[1] in new]}
    files = {"train": write(DATA / "old_train.csv", old_train),
             "test": write(DATA / "old_test.csv", tests["old"])}
    new_file = write(DATA / "new_intents.csv", new_train)
    base = train_base(files, args.reuse_base)

    defaults = RetrainOptions()
    clock = time.perf_counter()
    result = retrain(base, RetrainOptions(data=new_file, without_rehearsal=True,
                                          name="b77_retrain", promote=False))
    seconds = time.perf_counter() - clock
    report = json.loads((result.run_dir / "retrain.json").read_text())
    runs = {"before": base,
            "grown_head": result.run_dir.with_name("b77_retrain-data") / "grown-model",
            "with_rehearsal": result.run_dir,
            "without_rehearsal": result.run_dir.with_name("b77_retrain-norehearsal")}
    scores = {key: accuracies(run, tests) for key, run in runs.items()}
    drop = {k: round((scores["before"]["old"] - row["old"]) * 100, 2)
            for k, row in scores.items()}
    sweep = []
    for ratio in [float(r) for r in args.sweep.split(",") if r]:
        clock = time.perf_counter()
        swept = retrain(base, RetrainOptions(data=new_file, rehearsal=ratio, promote=False,
                                             name=f"b77_sweep_{ratio:g}"))
        sweep.append({"ratio": ratio, "seconds": round(time.perf_counter() - clock),
                      **accuracies(swept.run_dir, tests)})
        print(json.dumps(sweep[-1]), flush=True)

    if sweep and defaults.rehearsal not in {row["ratio"] for row in sweep}:
        sweep.append({"ratio": defaults.rehearsal, "seconds": float("nan"),
                      **scores["with_rehearsal"]})
    sweep.sort(key=lambda row: row["ratio"])
    markdown = render(report, scores, drop, sweep, defaults, seconds,
                      (len(intents), len(old_train), len(new_train), tests))
    print(markdown)
    update_section("continual", markdown)
    update_results({"rehearsal_old_intent_drop_pts": drop["with_rehearsal"],
                    "rehearsal_new_intent_acc": round(scores["with_rehearsal"]["new"], 4),
                    "no_rehearsal_old_intent_drop_pts": drop["without_rehearsal"]})
    (WORK / "continual.json").write_text(json.dumps(
        {"scores": scores, "sweep": sweep, "report": report}, indent=2))


def render(report: dict[str, Any], scores: dict[str, dict[str, float]],
           drop: dict[str, float], sweep: list[dict[str, float]], defaults: Any,
           seconds: float, sizes: tuple[int, int, int, dict[str, list[Any]]]) -> str:
    n_intents, n_old, n_new, tests = sizes
    lines = ["## Continual learning (`bench/continual.py`)", "",
             f"Machine: {machine_line()}.", "",
             f"Banking77: MiniLM-L6 trained {BASE_TRAINING['epochs']} epochs (lr "
             f"{BASE_TRAINING['lr']:g}) on the {n_intents - HELD_OUT} old intents ({n_old} "
             f"examples). Then `tunelab retrain --data` with the {n_new} training examples "
             f"of {HELD_OUT} new intents ({report['new_train']} trained on, "
             f"{report['new_held_back']} held back by retrain's gate), with retrain's "
             f"defaults: {defaults.epochs:g} epochs at the run's lr, rehearsal ratio "
             f"{defaults.rehearsal:g} ({report['rehearsal_examples']} original examples). "
             f"Retraining both variants took {seconds:.0f} s. Accuracy on the Banking77 test "
             f"set: {len(tests['old'])} old-intent and {len(tests['new'])} new-intent "
             "examples. The grown head is the model before fine-tuning: new rows fitted on "
             "its own features, encoder unchanged.", "",
             "| model | old-intent accuracy | change | new-intent accuracy |",
             "|---|---|---|---|"]
    for key, row in scores.items():
        change = "-" if key == "before" else f"{-drop[key]:+.2f} pt"
        lines.append(f"| {key.replace('_', ' ')} | {row['old']:.4f} | {change} | "
                     f"{row['new']:.4f} |")
    lines += ["", f"Promotion gate (tolerance 1 pt, new data must improve): "
              f"{'passes' if not report['reasons'] else '; '.join(report['reasons'])}."]
    if sweep:
        before = scores["before"]["old"]
        lines += ["", "Rehearsal ratio on the test set (original examples per new one; one "
                  "seed each, so differences under about 1 pt are noise). Shown, not used to "
                  "choose: the default is chosen on dev (section \"Rehearsal ratio chosen "
                  "on dev\"):", "",
                  "| ratio | old-intent accuracy | change | new-intent accuracy | retrain s |",
                  "|---|---|---|---|---|"]
        for row in sweep:
            took = "(above)" if row["seconds"] != row["seconds"] else f"{row['seconds']:.0f}"
            lines.append(f"| {row['ratio']:g} | {row['old']:.4f} | "
                         f"{(row['old'] - before) * 100:+.2f} pt | {row['new']:.4f} | {took} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
