"""The rehearsal-ratio choice of bench/continual.py, made on a dev split, never on test.

Each (ratio, seed) row is saved under bench/work/continual_select/ as it completes; a rerun
skips finished rows.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section
from continual import HELD_OUT, accuracies, rows, train_base, write

ROWS = WORK / "continual_select"
TOLERANCE_PTS = 1.0


def dev_split(data: list[tuple[str, str]], fraction: float = 0.1, seed: int = 11
              ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(fit, dev): `fraction` of each intent held out, seeded."""
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in data:
        by_label.setdefault(row[1], []).append(row)
    fit, dev = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        cut = max(1, round(len(group) * fraction))
        dev += group[:cut]
        fit += group[cut:]
    return fit, dev


def select_on_dev(ratios: list[float], seeds: int, reuse: bool) -> None:
    from tunelab.retrain import RetrainOptions, retrain

    train = rows(DATASETS / "banking77/train.csv")
    intents = sorted({label for _, label in train})
    new = set(random.Random(77).sample(intents, HELD_OUT))  # the same intents as continual.py
    fit, dev = dev_split(train)
    old_fit = [r for r in fit if r[1] not in new]
    new_fit = [r for r in fit if r[1] in new]
    devs = {"old": [r for r in dev if r[1] not in new], "new": [r for r in dev if r[1] in new]}
    data = WORK / "continual" / "select"
    # the run's "test" file is the old-intent dev part: retrain's gate reads it, not test
    files = {"train": write(data / "old_fit.csv", old_fit),
             "test": write(data / "old_dev.csv", devs["old"])}
    new_file = write(data / "new_fit.csv", new_fit)
    base = train_base(files, reuse, name="b77_old_select")
    ROWS.mkdir(parents=True, exist_ok=True)
    before_file = ROWS / "before.json"
    if not before_file.is_file():
        before_file.write_text(json.dumps(accuracies(base, devs)))
    before = json.loads(before_file.read_text())
    results: list[dict[str, Any]] = []
    for ratio in ratios:
        for seed in range(seeds):
            saved = ROWS / f"r{ratio:g}_s{seed}.json"
            if not saved.is_file():
                clock = time.perf_counter()
                done = retrain(base, RetrainOptions(
                    data=new_file, rehearsal=ratio, promote=False, seed=seed,
                    name=f"b77_select_{ratio:g}_s{seed}", overwrite=True))
                row = {"ratio": ratio, "seed": seed,
                       "seconds": round(time.perf_counter() - clock),
                       **accuracies(done.run_dir, devs)}
                saved.write_text(json.dumps(row))
                print(json.dumps(row), flush=True)
            results.append(json.loads(saved.read_text()))
    report(ratios, seeds, before, results, (len(old_fit), len(new_fit), devs))


def report(ratios: list[float], seeds: int, before: dict[str, float],
           results: list[dict[str, Any]], sizes: tuple[int, int, dict[str, Any]]) -> None:
    n_old, n_new, devs = sizes
    lines = ["## Rehearsal ratio chosen on dev (`bench/continual.py --select`)", "",
             f"Machine: {machine_line()}.", "",
             f"Banking77's training set split 90/10 per intent (seed 11); the test set is not "
             f"used. Base model: {n_old} old-intent examples; retrain: {n_new} new-intent "
             f"examples with retrain's defaults but the ratio. Scored on the dev part: "
             f"{len(devs['old'])} old-intent and {len(devs['new'])} new-intent examples. "
             f"{seeds} seeds per ratio (the retrain seed: the held-back and rehearsal samples "
             f"and the training order); mean ± standard deviation. Old-intent accuracy "
             f"before: {before['old']:.4f}.", "",
             "| ratio | old-intent change (pt) | new-intent accuracy | retrain s |",
             "|---|---|---|---|"]
    chosen = None
    for ratio in ratios:
        mine = [r for r in results if r["ratio"] == ratio]
        change = [(r["old"] - before["old"]) * 100 for r in mine]
        new = [r["new"] for r in mine]
        spread = statistics.stdev(change) if len(change) > 1 else 0.0
        lines.append(f"| {ratio:g} | {statistics.fmean(change):+.2f} ± {spread:.2f} | "
                     f"{statistics.fmean(new):.4f} ± "
                     f"{statistics.stdev(new) if len(new) > 1 else 0.0:.4f} | "
                     f"{statistics.fmean(r['seconds'] for r in mine):.0f} |")
        if chosen is None and -statistics.fmean(change) <= TOLERANCE_PTS:
            chosen = ratio
    lines += ["", f"Chosen: the smallest ratio whose mean old-intent drop on dev is at most "
              f"{TOLERANCE_PTS:g} pt: **{chosen if chosen is not None else 'none'}**."]
    markdown = "\n".join(lines)
    print(markdown)
    update_section("continual-select", markdown)
    if chosen is not None:
        update_results({"rehearsal_ratio_chosen_on_dev": chosen})


if __name__ == "__main__":
    raise SystemExit("run it as: python bench/continual.py --select 1,2,3,5 --seeds 3")
