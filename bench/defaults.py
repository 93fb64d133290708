"""The defaults study: what a user gets who gives tunelab only their data.

    python bench/defaults.py                 # every cell not yet saved, then the table
    python bench/defaults.py --report        # only the table, from the saved cells

For each dataset and size (examples per class, or sentences for NER) it runs:
- `default`: tunelab's defaults, nothing set but the data;
- `random-head`: the defaults with `training.head_init: keep` (the head starts random)
  and no fallback to the probe, which measures LP-FT;
- `old-defaults`: what the defaults were before this study (3 epochs, evaluation once an
  epoch, patience 2, a random head, no fallback);
- a learning-rate grid around the default (the default's own learning rate is in it); the
  grid's best is chosen on dev, never on test.
Each cell trains in a process of its own and is saved as it finishes
(bench/work/defaults/rows/); a rerun skips saved cells. The frozen-encoder probe's test score
comes from each default run's own record (its `probe` baseline).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section, write_rows

OUT = WORK / "defaults"
GRID_LRS = [2e-5, 1e-4]  # beside the default's own (full fine-tuning: 5e-5)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "random-head": {"head_init": "keep", "fallback_to_probe": False},
    "old-defaults": {"head_init": "keep", "fallback_to_probe": False, "epochs": 3,
                     "eval_every": "epoch", "early_stopping": {"patience": 2}},
    **{f"lr-{lr:g}": {"lr": lr} for lr in GRID_LRS},
}
# (dataset, size): text sets by examples per class, NER sets by sentences; small first
CELLS = [("sst2", 20), ("banking77", 20), ("agnews", 20), ("snips", 20), ("conll2003", 100),
         ("sst2", 100), ("agnews", 100), ("snips", 100), ("atis-slots", 300),
         ("banking77", 100), ("sst2", 1000), ("conll2003", 1000)]
SEED = 42


def sample_per_class(rows: list[tuple[str, str]], per_class: int, seed: int = 0
                     ) -> list[tuple[str, str]]:
    """Up to `per_class` rows of each label, a seeded random choice."""
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    counts: dict[str, int] = {}
    kept = []
    for text, label in shuffled:
        if counts.get(label, 0) < per_class:
            counts[label] = counts.get(label, 0) + 1
            kept.append((text, label))
    return kept


def write_csv(path: Path, rows: list[tuple[str, str]]) -> str:
    return str(write_rows(path, rows, ("text", "label")))


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True))
                                for words, tags in sentences) + "\n", encoding="utf-8")
    return str(path)


def read_tsv(path: Path, header: bool) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1 if header else 0:]
    return [(parts[0], parts[-1]) for parts in (line.split("\t") for line in lines)
            if len(parts) >= 2]


def read_seq(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """ATIS/SNIPS: seq.in, seq.out and label, one example a line."""
    def lines(name: str) -> list[str]:
        return (folder / name).read_text(encoding="utf-8").splitlines()
    return lines("seq.in"), lines("seq.out"), lines("label")


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, words, tags = [], [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    return sentences


def some(rows: list[Any], n: int, seed: int = 0) -> list[Any]:
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n]


def dataset(name: str, size: int) -> dict[str, Any]:
    """The task and data section of a run's config for one cell; files under OUT/data."""
    data = OUT / "data"
    text = {"task": "text-classification", "max_length": 64}
    if name == "sst2":
        train = sample_per_class(read_tsv(DATASETS / "sst2/train.tsv", True), size)
        dev = some(read_tsv(DATASETS / "sst2/dev.tsv", True), 500)
        return {**text, "train": write_csv(data / f"sst2_{size}.csv", train),
                "dev": write_csv(data / "sst2_dev.csv", dev),
                "test": write_csv(data / "sst2_test.csv", read_tsv(DATASETS / "sst2/test.tsv",
                                                                  True))}
    if name == "banking77":
        with (DATASETS / "banking77/train.csv").open(encoding="utf-8") as handle:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
        with (DATASETS / "banking77/test.csv").open(encoding="utf-8") as handle:
            test = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
        return {**text, "train": write_csv(data / f"banking77_{size}.csv",
                                           sample_per_class(rows, size)),
                "test": write_csv(data / "banking77_test.csv", test)}  # dev: 10% of train
    if name == "agnews":
        rows = read_tsv(DATASETS / "agnews/dev.tsv", False)  # a sample of AG's training set
        chosen = sample_per_class(rows, size)
        taken = set(chosen)
        rest = [row for row in rows if row not in taken]
        return {**text, "max_length": 128,
                "train": write_csv(data / f"agnews_{size}.csv", chosen),
                "dev": write_csv(data / "agnews_dev.csv", some(rest, 500)),
                "test": write_csv(data / "agnews_test.csv",
                                  some(read_tsv(DATASETS / "agnews/test.tsv", False), 2000))}
    if name == "snips":
        split = {}
        for part in ("train", "valid", "test"):
            words, _, labels = read_seq(DATASETS / "atis_snips/snips" / part)
            split[part] = list(zip(words, labels, strict=True))
        return {**text, "train": write_csv(data / f"snips_{size}.csv",
                                           sample_per_class(split["train"], size)),
                "dev": write_csv(data / "snips_dev.csv", some(split["valid"], 500)),
                "test": write_csv(data / "snips_test.csv", split["test"])}
    ner = {"task": "token-classification", "max_length": 128}
    if name == "conll2003":
        conll = DATASETS / "conll2003"
        return {**ner, "train": write_conll(data / f"conll_{size}.txt",
                                            some(read_conll(conll / "train.txt"), size)),
                "dev": write_conll(data / "conll_dev.txt",
                                   some(read_conll(conll / "valid.txt"), 500)),
                "test": str(conll / "test.txt")}
    atis = DATASETS / "atis_snips/atis"

    def slots(part: str) -> list[tuple[list[str], list[str]]]:
        words, tags, _ = read_seq(atis / part)
        return [(w.split(), t.split()) for w, t in zip(words, tags, strict=True)]
    return {**ner, "train": write_conll(data / f"atis_slots_{size}.txt",
                                        some(slots("train"), size)),
            "dev": write_conll(data / "atis_slots_dev.txt", slots("valid")),
            "test": write_conll(data / "atis_slots_test.txt", slots("test"))}


def cell_name(data: str, size: int, variant: str) -> str:
    return f"{data}-{size}__{variant}"


def run_cell(data: str, size: int, variant: str) -> None:
    import tunelab
    from tunelab.config import parse_config

    spec = dataset(data, size)
    task, max_length = spec.pop("task"), spec.pop("max_length")
    name = cell_name(data, size, variant)
    config = parse_config({"name": name, "output_dir": str(OUT / "runs"), "seed": SEED,
                           "task": task, "data": {**spec, "max_length": max_length},
                           "training": VARIANTS[variant]}, source=f"bench:{name}")
    record = tunelab.train(config, overwrite=True).record
    metric = record.metric
    row = {"dataset": data, "size": size, "variant": variant, "metric": metric,
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


def report(rows: dict[str, dict[str, Any]]) -> None:
    lines = [f"Conditions: MiniLM-L6 (packaged), seed {SEED}, one seed per cell; sizes are "
             "examples per class (text) or training sentences (NER), a seeded sample; dev "
             "and test as listed in `bench/defaults.py`; every figure is the test metric "
             "(accuracy, or entity F1 for NER) of the model the run shipped. The grid best "
             f"is chosen on dev among the default and lr {', '.join(map(str, GRID_LRS))}. "
             "`default s`: the default run's training seconds (the probe, the steps and the dev "
             "evaluations); some cells ran while tests shared the two cores, so read them as "
             "upper bounds. Test NLL: the mean negative log-likelihood of the gold label (text "
             f"sets; lower is better calibrated). Machine: {machine_line()}.", "",
             "| dataset | size | train | default | shipped | random head | old defaults | "
             "grid best (lr) | probe | default vs probe (pt) | gap to grid best (pt) | "
             "test NLL: default / random head | default s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    beats, gaps = [], []
    for data, size in CELLS:
        cell = {v: rows.get(cell_name(data, size, v)) for v in VARIANTS}
        default = cell["default"]
        if default is None:
            continue
        grid = [row for v, row in cell.items() if row and (v == "default" or v.startswith("lr-"))]
        best = max(grid, key=lambda r: r["dev"]) if len(grid) == 1 + len(GRID_LRS) else None
        probe = default["probe_test"]
        beats.append(default["test"] > probe if probe is not None else None)
        gap = (best["test"] - default["test"]) * 100 if best else None
        if gap is not None:
            gaps.append(gap)

        def score(row: dict[str, Any] | None) -> str:
            return f"{row['test']:.4f}" if row else "-"
        lines.append(
            f"| {data} | {size} | {default['train_size']} | {score(default)} | "
            f"{default['shipped']} | {score(cell['random-head'])} | "
            f"{score(cell['old-defaults'])} | "
            + (f"{best['test']:.4f} ({best['lr']:g}) | " if best else "- | ")
            + (f"{probe:.4f} | {(default['test'] - probe) * 100:+.2f} | " if probe is not None
               else "- | - | ")
            + (f"{gap:+.2f} | " if gap is not None else "- | ")
            + " / ".join(f"{value:.3f}" if value is not None else "-" for value in (
                test_nll(cell_name(data, size, v)) for v in ("default", "random-head")))
            + f" | {default['seconds']:.0f} |")
    counted = [b for b in beats if b is not None]
    values: dict[str, Any] = {}
    if counted:
        values["defaults_beat_baseline"] = round(sum(counted) / len(counted), 3)
    if gaps:
        values["defaults_gap_to_best_pts"] = round(statistics.median(gaps), 2)
        values["defaults_worst_gap_pts"] = round(max(gaps), 2)
    lines += ["", f"Cells finished: {sum(r is not None for r in rows.values())} of "
              f"{len(CELLS) * len(VARIANTS)} (rows missing from the table are still to run). "
              "`shipped: probe` means fine-tuning ended below the frozen-encoder probe on dev "
              "and the run shipped the probe, saying so."]
    update_results(values)
    update_section("defaults", "## Defaults on data nobody tuned for "
                   "(`python bench/defaults.py`)\n\n" + "\n".join(lines))
    print("\n".join(lines))


def saved() -> dict[str, dict[str, Any]]:
    folder = OUT / "rows"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.is_dir() \
        else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", nargs=3, metavar=("DATASET", "SIZE", "VARIANT"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--report", action="store_true",
                        help="only write the table from the cells saved so far")
    args = parser.parse_args()
    if args.cell:
        run_cell(args.cell[0], int(args.cell[1]), args.cell[2])
        return
    if not args.report:
        for data, size in CELLS:  # every variant of a cell before the next cell
            for variant in args.variants.split(","):
                if not (OUT / "rows" / f"{cell_name(data, size, variant)}.json").is_file():
                    print(f"--- {data} {size} {variant}", flush=True)
                    subprocess.run([sys.executable, __file__, "--cell", data, str(size),
                                    variant], check=False)
                    report(saved())
    report(saved())


if __name__ == "__main__":
    main()
