"""The defaults study: what a user gets who gives tunelab only their data.

    python bench/defaults.py                 # every cell not yet saved, then the table
    python bench/defaults.py --report        # only the table, from the saved cells

For each dataset and size (examples per class, or sentences for NER) it runs:
- `default`: tunelab's defaults, nothing set but the data (`head_init: auto`: the head starts
  from the probe with 20 labels or more, else random at its own learning rate);
- `probe-start`: the head always starts from the probe (LP-FT), the default before `auto`;
- `calibrated-probe`: the probe start divided by its dev temperature;
- `random-head`: a random head at the run's learning rate, no fallback to the probe;
- `random-head-fast`: a random head at its own learning rate (`head_lr` 1e-3);
- `old-defaults`: what the defaults were before this study (3 epochs, evaluation once an
  epoch, patience 2, a random head, no fallback);
- a learning-rate grid around the default (the default's own learning rate is in it); the
  grid's best is chosen on dev, never on test;
- `lr-find`: the defaults with `training.lr: find`, the learning-rate range test.
A variant whose settings are the default's for that cell (`probe-start` with 20 labels or
more, `random-head-fast` with fewer) stands in for `default` where the default did not run
itself; the table marks it †.
Each cell trains in a process of its own and is saved as it finishes
(bench/work/defaults/rows/); a rerun skips saved cells. The frozen-encoder probe's test score
comes from each default run's own record (its `probe` baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from typing import Any

from common import machine_line, update_results, update_section
from defaults_data import OUT, SEED, dataset

from tunelab.training.probe_start import PROBE_START_MIN_LABELS

GRID_LRS = [2e-5, 1e-4]  # beside the default's own (full fine-tuning: 5e-5)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "probe-start": {"head_init": "probe"},
    "calibrated-probe": {"head_init": "calibrated-probe"},
    "random-head": {"head_init": "keep", "fallback_to_probe": False},
    "random-head-fast": {"head_init": "keep", "head_lr": 1e-3},
    "old-defaults": {"head_init": "keep", "fallback_to_probe": False, "epochs": 3,
                     "eval_every": "epoch", "early_stopping": {"patience": 2}},
    **{f"lr-{lr:g}": {"lr": lr} for lr in GRID_LRS},
    "lr-find": {"lr": "find"},
}
# (dataset, size): text sets by examples per class, NER sets by sentences; small first
CELLS = [("sst2", 20), ("banking77", 20), ("agnews", 20), ("snips", 20), ("conll2003", 100),
         ("atis", 20),
         ("sst2", 100), ("agnews", 100), ("snips", 100), ("atis-slots", 300),
         ("banking77", 100), ("sst2", 1000), ("conll2003", 1000)]


def cell_name(data: str, size: int, variant: str, seed: int = SEED) -> str:
    return f"{data}-{size}__{variant}" + ("" if seed == SEED else f"__s{seed}")


def run_cell(data: str, size: int, variant: str, seed: int = SEED) -> None:
    import tunelab
    from tunelab.config import parse_config

    spec = dataset(data, size, seed)
    task, max_length = spec.pop("task"), spec.pop("max_length")
    name = cell_name(data, size, variant, seed)
    config = parse_config({"name": name, "output_dir": str(OUT / "runs"), "seed": seed,
                           "task": task, "data": {**spec, "max_length": max_length},
                           "training": VARIANTS[variant]}, source=f"bench:{name}")
    record = tunelab.train(config, overwrite=True).record
    metric = record.metric
    row = {"dataset": data, "size": size, "variant": variant, "seed": seed, "metric": metric,
           "test": record.test[metric], "dev": record.train.best_dev_metric,
           "shipped": record.shipped, "lr": record.lr, "steps": record.train.steps,
           "epochs": record.train.epochs, "seconds": record.train.seconds,
           "train_size": record.sizes["train"],
           "probe_test": record.baselines.get("probe", {}).get(metric),
           "probe_dev": record.dev_baselines.get("probe", {}).get(metric),
           "majority_test": record.baselines.get("majority", {}).get(metric)}
    (OUT / "rows").mkdir(parents=True, exist_ok=True)
    (OUT / "rows" / f"{name}.json").write_text(json.dumps(row, indent=2))


def test_nll(name: str) -> float | None:
    """Mean negative log-likelihood of the gold label over a text run's test predictions:
    how well its probabilities are calibrated (NER predictions carry no probabilities)."""
    path = OUT / "runs" / name / "predictions.jsonl"
    if not path.is_file():
        return None
    losses = []
    for line in path.read_text(encoding="utf-8").splitlines():
        prediction = json.loads(line)
        probabilities = prediction.get("probabilities")
        if not probabilities:
            return None
        losses.append(-math.log(max(probabilities.get(str(prediction["gold"]), 0.0), 1e-12)))
    return statistics.mean(losses) if losses else None


def label_count(rows: dict[str, dict[str, Any]], data: str, size: int) -> int | None:
    """How many labels (tags, for NER) a cell's task has, from any of its runs."""
    for name, row in rows.items():
        if (row["dataset"], row["size"]) == (data, size) and row.get("seed", SEED) == SEED:
            path = OUT / "runs" / row.get("run", name) / "metrics.json"
            if path.is_file():
                return len(json.loads(path.read_text())["labels"])
    return None


def default_row(cell: dict[str, dict[str, Any] | None], labels: int | None
                ) -> tuple[dict[str, Any] | None, str]:
    """The cell's default run, or the variant with the default's settings for it (†)."""
    if cell["default"] is not None or labels is None:
        return cell["default"], ""
    same = cell["probe-start" if labels >= PROBE_START_MIN_LABELS else "random-head-fast"]
    return same, "†" if same else ""


def report(rows: dict[str, dict[str, Any]]) -> None:
    lines = [f"Conditions: MiniLM-L6 (packaged), seed {SEED}, one seed per cell; sizes are "
             "examples per class (text) or training sentences (NER), a seeded sample; dev "
             "and test as listed in `bench/defaults_data.py` (ATIS intents and slots: held-out "
             "examples of labels or slot types absent from the training sample are left out, "
             "as tunelab refuses them); every figure is the test metric "
             "(accuracy, or entity F1 for NER) of the model the run shipped. The grid best "
             f"is chosen on dev among the default and lr {', '.join(map(str, GRID_LRS))}. "
             "†: the default's settings for that cell, run as the variant that has them "
             f"(`probe-start` with {PROBE_START_MIN_LABELS} labels or more, "
             "`random-head-fast` with fewer). `default s`: the default run's training seconds "
             "(the probe, the steps and the dev evaluations); some cells ran while tests shared "
             "the two cores, so read them as upper bounds. Test NLL: the mean negative "
             "log-likelihood of the gold label (text sets; lower is better calibrated). "
             f"Machine: {machine_line()}.", ""]
    header = ["dataset", "size", "labels", "train", "default", "shipped", "probe start",
              "calibrated probe", "random head", "random head, own lr", "old defaults",
              "lr find (picked)", "grid best (lr)", "probe", "default vs probe (pt)",
              "gap to grid best (pt)", "test NLL: default / random head", "default s"]
    table: list[list[str]] = []
    beats, gaps, found = [], [], []
    for data, size in CELLS:
        cell = {v: rows.get(cell_name(data, size, v)) for v in VARIANTS}
        labels = label_count(rows, data, size)
        default, mark = default_row(cell, labels)
        if default is None:
            continue
        grid = [row for row in (default, *(cell[f"lr-{lr:g}"] for lr in GRID_LRS)) if row]
        best = max(grid, key=lambda r: r["dev"]) if len(grid) == 1 + len(GRID_LRS) else None
        probe = default["probe_test"]
        beats.append((default["test"] > probe, default["shipped"] == "probe")
                     if probe is not None else None)
        gap = (best["test"] - default["test"]) * 100 if best else None
        if gap is not None:
            gaps.append(gap)
        if cell["lr-find"]:
            found.append((cell["lr-find"]["test"] - default["test"]) * 100)

        def score(row: dict[str, Any] | None) -> str:
            return f"{row['test']:.4f}" if row else "-"
        probe_default = default if (labels or 0) >= PROBE_START_MIN_LABELS else None
        nll = [test_nll(row.get("run", cell_name(data, size, row["variant"]))) if row else None
               for row in (default, cell["random-head"])]
        table.append([
            data, str(size), str(labels), str(default["train_size"]), score(default) + mark,
            default["shipped"], score(cell["probe-start"] or probe_default),
            score(cell["calibrated-probe"]), score(cell["random-head"]),
            score(cell["random-head-fast"]), score(cell["old-defaults"]),
            f"{cell['lr-find']['test']:.4f} ({cell['lr-find']['lr']:.2g})"
            if cell["lr-find"] else "-",
            f"{best['test']:.4f} ({best['lr']:g})" if best else "-",
            f"{probe:.4f}" if probe is not None else "-",
            f"{(default['test'] - probe) * 100:+.2f}" if probe is not None else "-",
            f"{gap:+.2f}" if gap is not None else "-",
            " / ".join(f"{value:.3f}" if value is not None else "-" for value in nll)
            if any(v is not None for v in nll) else "-",
            f"{default['seconds']:.0f}"])
    shown = [i for i in range(len(header)) if any(row[i] != "-" for row in table)]
    lines += ["| " + " | ".join(header[i] for i in shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(row[i] for i in shown) + " |" for row in table]
    counted = [b for b in beats if b is not None]
    values: dict[str, Any] = {}
    if counted:
        values["defaults_beat_baseline"] = round(sum(b for b, _ in counted) / len(counted), 3)
        values["defaults_beat_or_ship_baseline"] = round(
            sum(b or shipped for b, shipped in counted) / len(counted), 3)
    if gaps:
        values["defaults_gap_to_best_pts"] = round(statistics.median(gaps), 2)
        values["defaults_worst_gap_pts"] = round(max(gaps), 2)
    lines += ["", f"Cells finished: {sum(r is not None for r in rows.values())} of "
              f"{len(CELLS) * len(VARIANTS)} (rows missing from the table are still to run). "
              "`shipped: probe` means fine-tuning ended below the frozen-encoder probe on dev "
              "and the run shipped the probe, saying so. Columns of variants not run are left "
              "out. The study's table of 2026-11-24, with the head-start variants, the old "
              "defaults and the range test that chose these defaults, is kept as it was in "
              "`bench/defaults_earlier.md` (its rows were lost)."]
    lines += seed_check(rows)
    if found:
        values["lr_find_vs_default_median_pts"] = round(statistics.median(found), 2)
        lines += ["", f"The range test (`training.lr: find`) against the fixed default, test, "
                  f"over {len(found)} cells: median {statistics.median(found):+.2f} points, "
                  f"better in {sum(f > 0 for f in found)}, worse in {sum(f < 0 for f in found)}."]
    update_results(values)
    update_section("defaults", "## Defaults on data nobody tuned for "
                   "(`python bench/defaults.py`)\n\n" + "\n".join(lines))
    print("\n".join(lines))


def seed_check(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Cells repeated over more seeds (another training sample and initialisation each):
    the heads' starts compared where one seed left the difference unclear."""
    repeated = sorted({(r["dataset"], r["size"]) for r in rows.values()
                       if r.get("seed", SEED) != SEED})
    starts = ("default", "calibrated-probe", "random-head")
    if not repeated:
        return []
    lines = ["", "Seed check: test metric per seed (seed 42 first), then mean ± standard "
             "deviation; `-`: not run.", "",
             "| dataset | size | default (probe start) | calibrated probe start | random head |",
             "|---|---|---|---|---|"]
    for data, size in repeated:
        cells = []
        for variant in starts:
            tests = [r["test"] for r in sorted(rows.values(),
                                               key=lambda r: r.get("seed", SEED) != SEED)
                     if (r["dataset"], r["size"], r["variant"]) == (data, size, variant)]
            cells.append(" / ".join(f"{v:.3f}" for v in tests)
                         + (f" ({statistics.mean(tests):.3f} ± {statistics.stdev(tests):.3f})"
                            if len(tests) > 1 else "") if tests else "-")
        lines.append(f"| {data} | {size} | " + " | ".join(cells) + " |")
    return lines


def saved() -> dict[str, dict[str, Any]]:
    folder = OUT / "rows"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.is_dir() \
        else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", nargs=4, metavar=("DATASET", "SIZE", "VARIANT", "SEED"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cells", default="", help="only these, such as sst2-20,agnews-20")
    parser.add_argument("--seeds", default=str(SEED), help="such as 42,1,2 (seed checks)")
    parser.add_argument("--report", action="store_true",
                        help="only write the table from the cells saved so far")
    args = parser.parse_args()
    if args.cell:
        run_cell(args.cell[0], int(args.cell[1]), args.cell[2], int(args.cell[3]))
        return
    chosen = [c for c in CELLS if not args.cells or f"{c[0]}-{c[1]}" in args.cells.split(",")]
    todo = [(data, size, variant, int(seed)) for data, size in chosen
            for seed in args.seeds.split(",") for variant in args.variants.split(",")]
    for data, size, variant, seed in [] if args.report else todo:  # cell by cell
        if not (OUT / "rows" / f"{cell_name(data, size, variant, seed)}.json").is_file():
            print(f"--- {data} {size} {variant} seed {seed}", flush=True)
            subprocess.run([sys.executable, __file__, "--cell", data, str(size), variant,
                            str(seed)], check=False)
            report(saved())
    report(saved())


if __name__ == "__main__":
    main()
