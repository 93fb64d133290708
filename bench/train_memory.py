"""Where a training run's memory goes: peak RSS per phase, for each method, each in a
process of its own.

    python bench/train_memory.py                      # full, lora, lora without dropout
    python bench/train_memory.py --variants full,lora,ia3,adapter --repeats 3

A thread samples the process's resident set every 5 ms and keeps the peak of each phase:
imports, loading (model, data, method), training steps, dev evaluation and checkpoint
saving. The phases are told apart by wrapping the Trainer's own `evaluate` and
`_save_checkpoint`; nothing else is changed. The frozen-encoder probe is off
(`fallback_to_probe: false`; SST-2's two labels start a random head), so that the peak is
training's own: the probe's forward passes leave the process 50 to 100 MB bigger.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import DATASETS, WORK, machine_line, update_results, update_section
from methods import subset

OUT = WORK / "train_memory"
SST2 = DATASETS / "sst2"
PAGE = os.sysconf("SC_PAGE_SIZE")
PHASES = ["imports", "loading", "training steps", "dev evaluation", "checkpoint saving",
          "test and saving"]
LORA = {"name": "lora", "r": 8, "target_modules": "all-linear", "dropout": 0.1}
MICRO8 = {"micro_batch_size": 8}
WHOLE = {"micro_batch_size": 32}  # the whole batch in one forward pass
# name: (method, training options, environment); the parameter-efficient methods train in
# micro-batches of 8 by default (Method.micro_batch_size), full fine-tuning in whole batches
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, str]]] = {
    "full": ({"name": "full"}, {}, {}),
    "full+micro8": ({"name": "full"}, MICRO8, {}),
    "lora": (LORA, {}, {}),
    # the frozen-encoder probe on, as a run has it by default (fallback_to_probe)
    "lora+probe": (LORA, {"fallback_to_probe": True}, {}),
    "lora+whole-batch": (LORA, WHOLE, {}),
    "lora+micro4": (LORA, {"micro_batch_size": 4}, {}),
    "lora-nodropout": ({**LORA, "dropout": 0.0}, {}, {}),
    "ia3": ({"name": "ia3"}, {}, {}),
    "adapter": ({"name": "adapter"}, {}, {}),
    "full+checkpointing": ({"name": "full"}, {"gradient_checkpointing": True}, {}),
    "lora+checkpointing": (LORA, {"gradient_checkpointing": True}, {}),
    # glibc's documented tunable: large blocks go to mmap and back to the system when freed
    "full+mmap128k": ({"name": "full"}, {}, {"MALLOC_MMAP_THRESHOLD_": "131072"}),
    "lora+mmap128k": (LORA, {}, {"MALLOC_MMAP_THRESHOLD_": "131072"}),
}


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.phase = "imports"
        self.peaks: dict[str, float] = {}

    def rss_mb(self) -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE / 2**20

    def run(self) -> None:
        while True:
            rss = self.rss_mb()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(0.005)


def in_phase(sampler: Sampler, name: str, function: Any, after: str | None = None) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before = sampler.phase
        sampler.phase = name
        try:
            return function(*args, **kwargs)
        finally:
            sampler.phase = after or before
    return wrapped


def run_cell(method: str, train_size: int, epochs: float, repeat: int) -> None:
    sampler = Sampler()
    sampler.start()
    import datasets  # noqa: F401  (imported here so that "imports" holds every library)
    import peft  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import transformers.modeling_utils

    import tunelab
    from tunelab.config import parse_config

    sampler.phase = "loading"
    trainer = transformers.Trainer
    trainer.train = in_phase(sampler, "training steps", trainer.train, "test and saving")
    trainer.evaluate = in_phase(sampler, "dev evaluation", trainer.evaluate)
    trainer._save_checkpoint = in_phase(sampler, "checkpoint saving", trainer._save_checkpoint)
    config = parse_config({
        "name": f"memory-{method}", "output_dir": str(OUT / "runs"), "seed": 42,
        "task": "text-classification",
        "data": {"train": str(subset(SST2 / "train.tsv", OUT / f"train_{train_size}.tsv",
                                     train_size)),
                 "dev": str(subset(SST2 / "dev.tsv", OUT / "dev_500.tsv", 500)),
                 "test": str(subset(SST2 / "dev.tsv", OUT / "dev_500.tsv", 500)),
                 "text_column": "sentence", "max_length": 64},
        "method": VARIANTS[method][0],
        "training": {"epochs": epochs, "batch_size": 32, "eval_every": 50,
                     "fallback_to_probe": False, **VARIANTS[method][1]},
        "evaluation": {"baselines": False}}, source=f"bench:memory {method}")
    result = tunelab.train(config, overwrite=True)
    row = {"method": method, "repeat": repeat,
           **{p: round(sampler.peaks.get(p, 0.0), 1) for p in PHASES},
           "trainable": result.record.train.trainable_parameters,
           "seconds": result.record.train.seconds,
           "ru_maxrss_mb": result.record.train.peak_rss_mb}
    (OUT / "rows").mkdir(parents=True, exist_ok=True)
    row_file(method, repeat).write_text(json.dumps(row, indent=2))


def row_file(variant: str, repeat: int) -> Path:
    return OUT / "rows" / f"{variant}.{repeat}.json"


def peak(row: dict[str, Any]) -> float:
    return max(row[p] for p in PHASES)


def spread(values: list[float], digits: int) -> str:
    """The mean, and the range where there are several."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_variant.setdefault(row["method"], []).append(row)
    full = by_variant.get("full")
    full_peak = sum(map(peak, full)) / len(full) if full else float("nan")
    full_seconds = sum(r["seconds"] for r in full) / len(full) if full else float("nan")
    lines = [f"Conditions: MiniLM-L6, SST-2 {args.train}-example sample, {args.epochs} epochs, "
             "batch 32, max length 64, dev of 500 scored every 50 steps, one seed, the probe "
             "off, each run in its own process; where a variant ran more than once, the phases are "
             "means and the ratios a mean with the range over runs in brackets, against the "
             f"mean of full fine-tuning's runs. Machine: {machine_line()}.", "",
             "| variant | runs | trainable | " + " | ".join(PHASES)
             + " | peak x full | time x full |",
             "|---|---|---|" + "---|" * len(PHASES) + "---|---|"]
    for variant, runs in by_variant.items():
        phases = " | ".join(f"{sum(r[p] for r in runs) / len(runs):.0f}" for p in PHASES)
        lines.append(f"| {variant} | {len(runs)} | {runs[0]['trainable']:,} | {phases} | "
                     f"{spread([peak(r) / full_peak for r in runs], 2)} | "
                     f"{spread([r['seconds'] / full_seconds for r in runs], 2)} |")
    lines += ["", "Peak resident set (MB) within each phase; phases run in this order, and a "
              "later phase's peak includes what earlier ones left behind. `peak x full`: the "
              "run's highest phase over full fine-tuning's. `micro8`: the same 32 examples a "
              "step in micro-batches of 8 (`micro_batch_size: 8`; `micro4`: of 4), which the "
              "parameter-efficient methods take by default; `whole-batch`: all 32 in one "
              "forward pass, as they took before; `probe`: the frozen-encoder probe on, as a "
              "run has it by default (`fallback_to_probe`); `checkpointing`: "
              "`training.gradient_checkpointing: true`; `mmap128k`: "
              "`MALLOC_MMAP_THRESHOLD_=131072` in the environment. Free memory goes back to "
              "the system (`malloc_trim`) when training starts and around each evaluation and "
              "checkpoint. Time: train seconds over full fine-tuning's."]
    lora = by_variant.get("lora")
    if full and lora:
        state = 12 * (full[0]["trainable"] - lora[0]["trainable"]) / 2**20
        libraries = sum(r["imports"] for r in full) / len(full)
        loaded = sum(r["loading"] for r in lora) / len(lora) - libraries
        micro4 = by_variant.get("lora+micro4", [])
        steps4 = (sum(r["training steps"] for r in micro4) / len(micro4) / full_peak
                  if micro4 else float("nan"))
        lines += ["", f"What a parameter-efficient method saves by itself is the frozen weights' "
                  f"gradients and AdamW state, 12 bytes each: {state:.0f} MB here. The rest is "
                  f"shared: the libraries take the first {libraries:.0f} MB, the model, data and "
                  f"Trainer {loaded:.0f} more. LoRA keeps every adapted layer's input for its own "
                  f"gradient, as full fine-tuning does, and its dropout adds a copy of each, so at"
                  f" whole batches of 32 it takes more than full fine-tuning; in micro-batches of "
                  f"8 the activations are a quarter as large and the update the same. What is left"
                  f" above the libraries is mostly glibc's heap: a dev evaluation's batches of 64 "
                  f"grow it, and `malloc_trim` gives the free pages back but keeps the address "
                  f"space, which the next evaluation touches again. So with micro-batches of 4, "
                  f"LoRA's training steps peak lower ({steps4:.2f}x) but its evaluations do not, "
                  f"and only sending large blocks to `mmap` (`mmap128k`) keeps every phase low, at"
                  f" twice the time."]
    update_section("train_memory", "## Where training memory goes (`python bench/"
                   "train_memory.py`)\n\n" + "\n".join(lines))
    if full and lora:
        update_results({"lora_rss_ratio": round(
            sum(map(peak, lora)) / len(lora) / full_peak, 3)})
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from: " + ",".join(VARIANTS))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs a variant")
    parser.add_argument("--cell")
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--again", action="store_true", help="rerun finished rows")
    args = parser.parse_args()
    if args.cell:
        run_cell(args.cell, args.train, args.epochs, args.repeat)
        return
    rows = []
    # runs interleaved (every variant once, then again), so that a slow spell of the shared
    # machine does not fall on one variant's runs
    for repeat in range(args.repeats):
        for variant in args.variants.split(","):
            saved = row_file(variant, repeat)
            if args.again or not saved.is_file():
                print(f"--- {variant}, run {repeat + 1}", flush=True)
                subprocess.run([sys.executable, __file__, "--cell", variant, "--train",
                                str(args.train), "--epochs", str(args.epochs), "--repeat",
                                str(repeat)], check=True,
                               env={**os.environ, **VARIANTS[variant][2]})
    for variant in args.variants.split(","):  # every saved run, however many were asked for
        rows += [json.loads(saved.read_text())
                 for saved in sorted((OUT / "rows").glob(f"{variant}.[0-9]*.json"))]
    report(rows, args)


if __name__ == "__main__":
    main()
