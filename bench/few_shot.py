"""Learning from few labels: zero-shot from label names, few-shot (SetFit, through tunelab
and through the `setfit` package itself), and plain fine-tuning on the same few examples.

    python bench/few_shot.py                  # every cell not yet saved, then the table
    python bench/few_shot.py --report         # only the table, from the saved cells
    python bench/few_shot.py --sizes 8 --seeds 42,1,2 --datasets sst2,banking77

Each cell trains in a process of its own and is saved as it finishes
(bench/work/few_shot/rows/); a rerun skips saved cells. The training samples are the
defaults study's (`bench/defaults_data.py`): N examples a label, another seed another draw;
dev and test stay. Zero-shot's template is chosen on dev among TEMPLATES, never on test.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section
from defaults_data import dataset, sample_per_class, some, write_csv

OUT = WORK / "few_shot"
SEEDS = [42, 1, 2]
VARIANTS = ["few-shot", "setfit-package", "full"]
# few-shot with k copies of each label's sentences; the default (few-shot) has 8, chosen on
# these rows' dev; rows run as few-shot-labels8 before it was the default are its rows
LABEL_VARIANTS = ["few-shot-labels0", "few-shot-labels2"]
LABEL_COPIES = {"few-shot-labels0": 0, "few-shot-labels2": 2, "few-shot": 8}
# plain fine-tuning as a Trainer tutorial does it: a random head at the body's rate
# (`head_init: keep`); "full" is tunelab's default, which starts the head from the probe
# with 20 labels or more
RANDOM_HEAD = "full-random-head"
OPTIONAL = [*LABEL_VARIANTS, RANDOM_HEAD]
TEMPLATES = {"about": ["This text is about {label}."], "name": ["{label}."],
             "both": ["{label}.", "This text is about {label}."]}
DESCRIBE = {"sst2": {"0": "negative", "1": "positive"}}  # SST-2's labels are 0 and 1
PROMPT_DEV, PROMPT_TEST, PROMPT_SHOTS = 100, 500, 4
DATASETS_SHOWN, SIZES = "sst2,banking77,agnews", "8,16,64"


def data_for(name: str, size: int, seed: int) -> dict[str, Any]:
    """Banking77 gets a dev file of its own (500 training rows outside every sample), so the
    few examples are all trained on; the others are the defaults study's cells."""
    if name != "banking77":
        return dataset(name, size, seed)
    with (DATASETS / "banking77/train.csv").open(encoding="utf-8") as handle:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
    dev = some(rows, 500)
    rest = [row for row in rows if row not in set(dev)]
    with (DATASETS / "banking77/test.csv").open(encoding="utf-8") as handle:
        test = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
    data = OUT / "data"
    tag = "" if seed == 42 else f"_s{seed}"
    return {"task": "text-classification", "max_length": 64,
            "train": write_csv(data / f"banking77_{size}{tag}.csv",
                               sample_per_class(rest, size, 0 if seed == 42 else seed)),
            "dev": write_csv(data / "banking77_dev.csv", dev),
            "test": write_csv(data / "banking77_test.csv", test)}


def read(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [(r["text"], r["label"]) for r in csv.DictReader(handle)]


def cell_name(data: str, variant: str, size: int, seed: int) -> str:
    return f"{data}__{variant}__{size}__s{seed}"


def run_cell(data: str, variant: str, size: int, seed: int) -> dict[str, Any]:
    import tunelab
    from tunelab.config import parse_config

    # the prompted LM takes its labels (and, with shots, its examples) from the 8-a-label draw
    spec = data_for(data, 8 if variant == "prompt-lm" else size, seed)
    task = spec.pop("task")
    files = {"dev": spec["dev"], "test": spec["test"], "max_length": spec["max_length"]}
    if variant.startswith("zero-shot"):
        template = variant.removeprefix("zero-shot-")
        labels = sorted({label for _, label in read(spec["test"])})
        raw = {"task": {"type": task, "labels": labels}, "data": files,
               "method": {"name": "zero-shot", "templates": TEMPLATES[template],
                          "descriptions": DESCRIBE.get(data, {})}}
    elif variant == "setfit-package":
        return setfit_package(spec, seed)
    elif variant.startswith("prompt-lm"):  # scored text by text: subsets of dev and test
        files.update({part: write_csv(OUT / "data" / f"{data}_{part}_{n}.csv",
                                      some(read(spec[part]), n))
                      for part, n in (("dev", PROMPT_DEV), ("test", PROMPT_TEST))})
        raw = {"task": task, "data": {**files, "train": spec["train"]},
               "method": {"name": "prompt-lm", "shots": 0 if size == 0 else PROMPT_SHOTS,
                          "verbalisers": DESCRIBE.get(data, {})},
               "training": {"fallback_to_probe": False}}
    else:  # no fallback to the probe: the method itself is measured (the probe is a column)
        method: dict[str, Any] = {"name": variant}
        if variant.startswith("few-shot"):  # SST-2's labels 0 and 1 described, as for zero-shot
            method = {"name": "few-shot", "descriptions": DESCRIBE.get(data, {})}
        if variant.startswith("few-shot-labels"):  # label sentences join the examples
            method["label_examples"] = int(variant.removeprefix("few-shot-labels"))
        if variant == RANDOM_HEAD:
            method = {"name": "full"}
        training = {"fallback_to_probe": False,
                    **({"head_init": "keep"} if variant == RANDOM_HEAD else {})}
        raw = {"task": task, "data": {**files, "train": spec["train"]},
               "method": method, "training": training}
    config = parse_config({"name": cell_name(data, variant, size, seed), "seed": seed,
                           "output_dir": str(OUT / "runs"), **raw}, source="bench")
    record = tunelab.train(config, overwrite=True).record
    return {"test": record.test["accuracy"], "dev": record.train.best_dev_metric,
            "seconds": record.train.seconds, "shipped": record.shipped,
            "probe": record.baselines.get("probe", {}).get("accuracy"),
            "train": record.sizes["train"]}


def setfit_package(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """The `setfit` package as its README shows it, on the same sample: its defaults
    (20 pair iterations an example, one epoch, logistic-regression head)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tunelab.models import resolve_model

    texts, labels = map(list, zip(*read(spec["train"]), strict=True))
    test_texts, test_labels = map(list, zip(*read(spec["test"]), strict=True))
    model = SetFitModel.from_pretrained(resolve_model("minilm-l6").source,
                                        local_files_only=True)
    started = time.perf_counter()
    args = TrainingArguments(batch_size=16, num_iterations=20, num_epochs=1, seed=seed,
                             report_to="none", save_strategy="no",
                             output_dir=str(OUT / "setfit_checkpoints"))
    Trainer(model=model, args=args,
            train_dataset=Dataset.from_dict({"text": texts, "label": labels})).train()
    seconds = time.perf_counter() - started
    predicted = model.predict(test_texts, batch_size=64)
    correct = sum(str(p) == gold for p, gold in zip(predicted, test_labels, strict=True))
    return {"test": correct / len(test_labels), "dev": None, "seconds": round(seconds, 2),
            "shipped": "setfit", "probe": None, "train": len(texts)}


def cells(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    """Size 0: zero-shot (each template) and the prompted LM with no shots; size 8 also
    runs the prompted LM with shots from the 8-a-label draw. `--variants` keeps the cells
    of the variants named (zero-shot: every template)."""
    datasets, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    todo = []
    for size in [int(s) for s in args.sizes.split(",")]:
        if size == 0:
            todo += [(d, f"zero-shot-{t}", 0, 42) for d in datasets for t in TEMPLATES]
            todo += [(d, "prompt-lm", 0, 42) for d in datasets]
            continue
        todo += [(d, v, size, s) for d in datasets for s in seeds for v in VARIANTS
                 + OPTIONAL]
        todo += [(d, "prompt-lm", 8, 42) for d in datasets if size == 8]
    if args.variants:
        named = args.variants.split(",")
        return [cell for cell in todo if cell[1] in named
                or ("zero-shot" in named and cell[1].startswith("zero-shot-"))]
    return [cell for cell in todo if cell[1] not in OPTIONAL]


def saved(name: str) -> dict[str, Any] | None:
    path = OUT / "rows" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.4f} (1 seed)"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f} ({len(values)} seeds)"


def points(a: float, b: float) -> str:
    difference = (a - b) * 100
    return "-" if difference != difference else f"{difference:+.2f}"  # nan: not run


def label_sentence_table(datasets: list[str]) -> list[str]:
    """Few-shot with each label's sentences among the examples (`label_examples` k, the
    zero-shot template), against none; the default k is the best mean dev at N = 8 over
    SST-2 and AG News."""
    ks = LABEL_COPIES
    lines = ["", "Few-shot with each label's sentence among its examples (`label_examples: k`, "
             "the zero-shot template `This text is about {label}.`; SST-2's labels described "
             "as negative and positive). The default, k = 8, has the best mean dev accuracy "
             "over SST-2 and AG News at N = 8 (3 seeds each); best k: the best mean dev of "
             "those run in the row:", "",
             "| dataset | N | " + " | ".join(f"k = {k}: dev / test" for k in ks.values())
             + " | best k (dev) | default's test - k = 0 (pt) |",
             "|---|---|" + "---|" * (len(ks) + 2)]
    for data in datasets:
        for size in [int(s) for s in SIZES.split(",")]:
            got = {v: [r for s in SEEDS if (r := saved(cell_name(data, v, size, s)))]
                   for v in ks}
            if not (got["few-shot"] and got["few-shot-labels0"]):
                continue
            dev = {v: statistics.mean(r["dev"] for r in rows) for v, rows in got.items() if rows}
            test = {v: statistics.mean(r["test"] for r in rows) for v, rows in got.items()
                    if rows}
            lines.append(f"| {data} | {size} | " + " | ".join(
                f"{dev[v]:.4f} / {spread([r['test'] for r in got[v]])}" if got[v] else "-"
                for v in ks) + f" | {ks[max(dev, key=lambda v: dev[v])]} | "
                f"{points(test['few-shot'], test['few-shot-labels0'])} |")
    return lines if len(lines) > 5 else []


def random_head_table(datasets: list[str]) -> tuple[list[str], dict[str, float]]:
    """Plain fine-tuning with a random head, against few-shot and tunelab's default
    fine-tuning on the same seeds: the baseline the literature's few-shot gains are over."""
    lines = ["", "Plain fine-tuning as a Trainer tutorial does it, a random head at the body's "
             "rate (`head_init: keep`), against few-shot and tunelab's default fine-tuning on "
             "the same seeds (they differ where tunelab's default starts the head from the "
             "probe, with 20 labels or more):", "",
             "| dataset | N | random head | tunelab default | few-shot | few-shot - random head "
             "(pt) |", "|---|---|---|---|---|---|"]
    values: dict[str, float] = {}
    for data in datasets:
        for size in [int(s) for s in SIZES.split(",")]:
            seeds = [s for s in SEEDS if saved(cell_name(data, RANDOM_HEAD, size, s))]
            got = {v: [saved(cell_name(data, v, size, s)) for s in seeds]
                   for v in (RANDOM_HEAD, "full", "few-shot")}
            if not seeds or not all(all(rows) for rows in got.values()):
                continue
            acc = {v: [r["test"] for r in rows] for v, rows in got.items()}
            gain = (statistics.mean(acc["few-shot"]) - statistics.mean(acc[RANDOM_HEAD])) * 100
            lines.append(f"| {data} | {size} | " + " | ".join(spread(acc[v]) for v in acc)
                         + f" | {gain:+.2f} |")
            if size == 8:
                values[f"fewshot8_gain_pts_{data}_random_head"] = round(gain, 2)
    return (lines if len(lines) > 5 else []), values


def report() -> None:
    """The table from every saved cell, whatever this invocation ran."""
    args = argparse.Namespace(datasets=DATASETS_SHOWN, sizes=SIZES,
                              seeds=",".join(map(str, SEEDS)))
    lines = [f"Conditions: MiniLM-L6 (packaged); N examples a label, a seeded sample (each "
             f"seed of {args.seeds} another draw; each figure says over how many seeds); "
             "dev 500 (Banking77: 500 training rows outside every sample), test: SST-2 "
             "test.tsv, Banking77 test, 2000 of AG News test; tunelab runs at their "
             "defaults (dev used for early stopping and calibration) but with no fallback "
             "to the probe, so that the method is measured (the probe's own score is in "
             "each saved row); the setfit package at its README defaults, without dev. "
             "Zero-shot: the template chosen on dev among "
             f"{', '.join(TEMPLATES)} ({'; '.join(' + '.join(t) for t in TEMPLATES.values())})"
             f". Seconds: training (and the probe for tunelab runs). Machine: {machine_line()}.",
             "", "| dataset | N | few-shot (tunelab) | setfit package | "
             "full fine-tuning | few-shot - full (pt) | few-shot - setfit (pt) | seconds: "
             "few-shot / setfit / full |", "|---|---|---|---|---|---|---|---|"]
    untrained = ["", f"Without training (prompted LM: SmolLM2-135M-Instruct, {PROMPT_TEST} test "
                 f"and {PROMPT_DEV} dev texts, a seeded sample; {PROMPT_SHOTS} shots: the "
                 "nearest of the 8-a-label sample, seed 42):", "",
                 "| dataset | zero-shot, MiniLM (template chosen on dev) | dev accuracy by "
                 f"template | prompted LM, 0 shots | prompted LM, {PROMPT_SHOTS} shots | fit "
                 "seconds (prompted LM, 0 / 4 shots; scoring not in it) |",
                 "|---|---|---|---|---|---|"]
    values: dict[str, Any] = {}
    for data in args.datasets.split(","):
        zero = [(saved(cell_name(data, f"zero-shot-{t}", 0, 42)), t) for t in TEMPLATES]
        zero = [(row, t) for row, t in zero if row]
        best = max(zero, key=lambda item: item[0]["dev"]) if zero else None
        if best:
            values[f"zeroshot_{data}_acc"] = round(best[0]["test"], 4)
        prompted = [saved(cell_name(data, "prompt-lm", size, 42)) for size in (0, 8)]
        untrained.append(
            f"| {data} | " + (f"{best[0]['test']:.4f} ({best[1]}) | "
                              + ", ".join(f"{t} {row['dev']:.3f}" for row, t in zero)
                              if best else "- | -") + " | "
            + " | ".join(f"{row['test']:.4f}" if row else "-" for row in prompted) + " | "
            + " / ".join(f"{row['seconds']:.0f}" + ("†" if row.get("shared_cpu") else "")
                         if row else "-" for row in prompted) + " |")
        for size in [int(s) for s in args.sizes.split(",")]:
            got = {v: [r for s in SEEDS if (r := saved(cell_name(data, v, size, s)))]
                   for v in VARIANTS}
            if not any(got.values()):
                continue
            acc = {v: [r["test"] for r in rows] for v, rows in got.items()}
            mean = {v: statistics.mean(a) if a else float("nan") for v, a in acc.items()}
            secs = " / ".join(f"{statistics.median(r['seconds'] for r in got[v]):.0f}"
                              + ("†" if any(r.get("shared_cpu") for r in got[v]) else "")
                              if got[v] else "-" for v in VARIANTS)
            shipped = {v: "‡" if any(r.get("shipped") == "probe" for r in got[v]) else ""
                       for v in VARIANTS}
            lines.append(
                f"| {data} | {size} | " + " | ".join(spread(acc[v]) + shipped[v]
                                                     for v in VARIANTS)
                + f" | {points(mean['few-shot'], mean['full'])} | "
                f"{points(mean['few-shot'], mean['setfit-package'])} | {secs} |")
            if size == 8 and acc["few-shot"] and not shipped["few-shot"]:  # ‡: not the method
                values[f"fewshot8_{data}_acc"] = round(mean["few-shot"], 4)
                if acc["full"]:
                    values[f"fewshot8_gain_pts_{data}"] = round(
                        (mean["few-shot"] - mean["full"]) * 100, 2)
                if acc["setfit-package"]:
                    values[f"fewshot8_vs_setfit_pts_{data}"] = round(
                        (mean["few-shot"] - mean["setfit-package"]) * 100, 2)
    lines += label_sentence_table(args.datasets.split(","))
    random_head, random_head_values = random_head_table(args.datasets.split(","))
    lines += random_head
    values |= random_head_values
    lines += untrained
    lines += ["", "† some of these cells ran while tests shared the two cores, or while the "
              "benchmark was paused for a timing (marked `shared_cpu` in their rows): their "
              "seconds are upper bounds; accuracy is unaffected."]
    if any("‡" in line for line in lines):
        lines += ["", "‡ a run of this cell ran with the fallback to the probe on (cells run "
                  "before it was turned off for this benchmark) and shipped the frozen-encoder "
                  "probe, as it was below it on dev: the figure is the probe's, not the method's."]
    update_results(values)
    update_section("few_shot", "## Learning from few labels (`python bench/few_shot.py`)\n\n"
                   + "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DATASETS_SHOWN)
    parser.add_argument("--sizes", default="0," + SIZES, help="0: no training (zero-shot, "
                        "the prompted LM)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--variants", default="", help="only these: zero-shot, prompt-lm, "
                        f"{', '.join(VARIANTS + OPTIONAL)} (default: all but the "
                        "label-sentence and random-head variants)")
    parser.add_argument("--cell", nargs=4, metavar=("DATASET", "VARIANT", "N", "SEED"))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.cell:
        data, variant, size, seed = args.cell
        row = run_cell(data, variant, int(size), int(seed))
        (OUT / "rows").mkdir(parents=True, exist_ok=True)
        name = cell_name(data, variant, int(size), int(seed))
        (OUT / "rows" / f"{name}.json").write_text(json.dumps(
            {"dataset": data, "variant": variant, "size": int(size), "seed": int(seed), **row},
            indent=2))
        return
    if not args.report:
        for data, variant, size, seed in cells(args):
            if saved(cell_name(data, variant, size, seed)) is None:
                print(f"--- {data} {variant} N={size} seed {seed}", flush=True)
                subprocess.run([sys.executable, __file__, "--cell", data, variant, str(size),
                                str(seed)], check=False)
                report()
    report()


if __name__ == "__main__":
    main()
