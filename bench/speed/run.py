"""Speed harness: time to accuracy for tunelab against a tutorial loop and HF Trainer
defaults, on the same model, data, epochs budget, learning rate and batch size.

    python bench/speed/run.py            # SST-2 and Banking77 subsets (about 40 minutes)
    python bench/speed/run.py sst2       # one dataset
    python bench/speed/run.py --only tunelab,tunelab_constant   # re-run these contenders,
                                          # reuse the other rows saved in bench/work/speed
    python bench/speed/run.py --report    # rebuild the report from the saved rows

Each contender runs in its own process (bench/speed/contenders.py). Results: a table and a
plot in bench/RESULTS.md, keys in bench/results.json, raw rows in bench/work/speed/.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import BENCH, DATASETS, WORK, machine_line, update_results, update_section

HERE = Path(__file__).resolve().parent
SPEED = WORK / "speed"
LR = 2e-5  # the tutorial's learning rate, shared by every contender
SUBSETS = {
    # name: (source files, text column, label column, train, dev, test sizes, epochs)
    "sst2": ({"train": DATASETS / "sst2/train.tsv", "test": DATASETS / "sst2/test.tsv"},
             "sentence", "label", 2000, 500, 872, 3.0),
    "banking77": ({"train": DATASETS / "banking77/train.csv",
                   "test": DATASETS / "banking77/test.csv"},
                  "text", "category", 2000, 500, 1000, 4.0),
}
FROZEN = 3  # the frozen-layer lever: embeddings + the lower half of MiniLM-L6
CONTENDERS = {
    "tutorial": ("tutorial", []),
    "trainer": ("trainer", []),
    "tunelab": ("tunelab", []),
    # the tutorial's optimizer schedule (constant lr, no warm-up) on tunelab's pipeline
    "tunelab_constant": ("tunelab", ["training.scheduler=constant", "training.warmup_ratio=0"]),
    f"tunelab_frozen{FROZEN}": ("tunelab", [f"training.freeze_layers={FROZEN}"]),
}


def read_rows(path: Path, text: str, label: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
        return [(r[text].strip(), r[label]) for r in reader if r[text].strip()]


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def make_subset(name: str) -> Path:
    """Fixed, seeded subsets: train and dev from the training file, test from the test file."""
    files, text, label, n_train, n_dev, n_test, _ = SUBSETS[name]
    directory = SPEED / "data" / name
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)
    pool = read_rows(files["train"], text, label)
    rng.shuffle(pool)
    train = pool[:n_train]
    seen = {lab for _, lab in train}
    dev = [row for row in pool[n_train:] if row[1] in seen][:n_dev]
    test = [row for row in read_rows(files["test"], text, label) if row[1] in seen]
    rng.shuffle(test)
    for split, rows in (("train", train), ("dev", dev), ("test", test[:n_test])):
        write_rows(directory / f"{split}.csv", rows)
    return directory


def peak_flops(n: int = 2048, repeats: int = 8) -> float:
    """Best fp32 matmul rate of this machine, with torch's default threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started))
    return best


def run_contender(label: str, dataset: str, data: Path, epochs: float) -> dict[str, Any]:
    kind, overrides = CONTENDERS[label]
    out = SPEED / f"{dataset}_{label}.json"
    command = [sys.executable, str(HERE / "contenders.py"), kind, str(data), str(out),
               "--epochs", str(epochs), "--lr", str(LR)]
    for assignment in overrides:
        command += ["--set", assignment]
    print(f"== {dataset} / {label}", flush=True)
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def first_time(curve: list[list[float]], target: float) -> float | None:
    return next((t for t, acc in curve if acc >= target - 1e-9), None)


def time_to_accuracy(peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Target: the peer's best dev accuracy less 0.5 pt. Ratio: peer's time over ours."""
    target = max(acc for _, acc in peer["curve"]) - 0.005
    peer_t, our_t = first_time(peer["curve"], target), first_time(ours["curve"], target)
    return {"target": target, "peer_s": peer_t, "ours_s": our_t,
            "ratio": round(peer_t / our_t, 2) if peer_t and our_t else None}


def plot(rows: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4.2), squeeze=False)
    for ax, (dataset, by_name) in zip(axes[0], rows.items(), strict=True):
        for label, row in by_name.items():
            times, accs = zip(*row["curve"], strict=True)
            ax.plot(times, accs, marker="o", markersize=3, label=label)
        ax.set_title(f"{dataset}: dev accuracy against training time")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel("dev accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(rows: dict[str, dict[str, dict[str, Any]]], flops: float) -> tuple[str, dict]:
    lines = ["## Speed: time to accuracy against peers (`bench/speed/run.py`)", "",
             f"Machine: {machine_line()}. Peak fp32 matmul: {flops / 1e9:.1f} GFLOP/s "
             "(2048x2048, best of 3).", "",
             f"Same model (MiniLM-L6), data, epochs budget, learning rate ({LR}) and batch size "
             "(32) for all. Dev accuracy every quarter epoch; clocks exclude evaluation and "
             "include tokenisation and caching. Time to accuracy: first time a contender's dev "
             "accuracy reaches the peer's best less 0.5 pt; speed-up = peer's time / tunelab's.",
             "", "| dataset | contender | train s | samples/s | test acc | best dev | peak RSS MB "
             "| peak FLOP/s used | vs tutorial | vs Trainer defaults |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys: dict[str, Any] = {}
    for dataset, by_name in rows.items():
        for label, row in by_name.items():
            fraction = row["useful_tokens_per_second"] * row["flops_per_token"] / flops
            row["peak_fraction"] = fraction
            vs = {peer: time_to_accuracy(by_name[peer], row) for peer in ("tutorial", "trainer")}
            row["vs"] = vs
            cells = [f"{v['ratio']:.2f}x" if v["ratio"] else "not reached" for v in vs.values()]
            if label in ("tutorial", "trainer"):
                cells = ["-", "-"]
            lines.append(
                f"| {dataset} | {label} | {row['train_seconds']:.0f} | "
                f"{row['samples_per_second']:.1f} | {row['test_acc']:.4f} | "
                f"{max(a for _, a in row['curve']):.4f} | {row['peak_rss_mb']:.0f} | "
                f"{fraction:.1%} | {cells[0]} | {cells[1]} |")
    lines += ["", "![accuracy against time](speed_curves.png)", ""]
    return "\n".join(lines), keys


def main() -> None:
    args = sys.argv[1:]
    only = None
    if "--report" in args:
        args.remove("--report")
        only = set()
    if "--only" in args:
        at = args.index("--only")
        only = set(args[at + 1].split(","))
        del args[at:at + 2]
    datasets = args or list(SUBSETS)
    SPEED.mkdir(parents=True, exist_ok=True)
    saved = SPEED / "summary.json"
    # a report rebuilt from saved rows keeps the peak measured in the run that made them
    flops = (json.loads(saved.read_text())["peak_flops"] if only == set() and saved.exists()
             else peak_flops())
    print(f"peak fp32 matmul: {flops / 1e9:.1f} GFLOP/s", flush=True)
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in datasets:
        data = make_subset(dataset)
        epochs = SUBSETS[dataset][-1]
        rows[dataset] = {
            label: run_contender(label, dataset, data, epochs)
            if only is None or label in only or not (SPEED / f"{dataset}_{label}.json").exists()
            else json.loads((SPEED / f"{dataset}_{label}.json").read_text())
            for label in CONTENDERS}
    (SPEED / "summary.json").write_text(json.dumps({"peak_flops": flops, "rows": rows},
                                                   indent=2))
    plot(rows, BENCH / "speed_curves.png")
    markdown, _ = report(rows, flops)
    print(markdown)
    update_section("speed", markdown)
    summarise_keys(rows)


# Each peer is matched by tunelab on the same learning-rate schedule, so that the speed-up
# measures the pipeline (padding, batching, caching), not a schedule that suits the budget.
LIKE_FOR_LIKE = {"tutorial": "tunelab_constant", "trainer": "tunelab"}


def summarise_keys(rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Headline keys: geometric means over the datasets, each peer against the tunelab
    contender on its schedule. A dataset where the target was not reached counts as 0."""
    import math

    def geo(values: list[float | None]) -> float | None:
        if not values or any(v is None for v in values):
            return None
        return round(math.exp(sum(math.log(v) for v in values) / len(values)), 2)

    ratios = {peer: [by_name[ours]["vs"][peer]["ratio"] for by_name in rows.values()
                     if ours in by_name] for peer, ours in LIKE_FOR_LIKE.items()}
    defaults = [by_name["tunelab"] for by_name in rows.values()]
    update_results({
        "speed_vs_tutorial": geo(ratios["tutorial"]),
        "speed_vs_trainer_defaults": geo(ratios["trainer"]),
        "train_peak_fraction": round(sum(r["peak_fraction"] for r in defaults)
                                     / len(defaults), 3),
    })


if __name__ == "__main__":
    main()
