"""The speed levers, one at a time, on the SST-2 speed subset (and AG News for truncation,
CoNLL-2003 for the tokenisation cache). Each training row is a tunelab run in its own
process (bench/speed/contenders.py), so peak RSS is per run.

    python bench/speed/levers.py        # about 12 minutes; needs bench/speed/run.py's data

Results: bench/RESULTS.md ("Speed levers") and `lora_rss_ratio` in bench/results.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import DATASETS, machine_line, update_results, update_section
from run import HERE, SPEED, make_subset, write_rows

LR = 5e-5  # tunelab's default for full fine-tuning
ONE_EPOCH = [  # (label, overrides): throughput over one epoch
    ("dynamic padding, random order", ["training.group_by_length=false"]),
    ("+ length-grouped batches (default)", []),
    ("+ 1 thread instead of 2", ["threads=1"]),
    ("+ 1 DataLoader worker", ["training.dataloader_workers=1"]),
    ("+ dropout 0", ["model.dropout=0.0"]),
    ("LoRA r=8 (peft default modules)", ["method.name=lora"]),
]
THREE_EPOCHS = [  # accuracy and time together
    ("full, 3 epochs", []),
    ("freeze 2 layers + cache", ["training.freeze_layers=2"]),
    ("freeze 3 layers + cache", ["training.freeze_layers=3"]),
    ("freeze 3 layers, no cache", ["training.freeze_layers=3", "training.cache_frozen=false"]),
]


def contender(label: str, data: Path, epochs: float, lr: float, overrides: list[str]
              ) -> dict[str, Any]:
    out = SPEED / f"lever_{abs(hash((label, str(data)))) % 10**8}.json"
    command = [sys.executable, str(HERE / "contenders.py"), "tunelab", str(data), str(out),
               "--epochs", str(epochs), "--lr", str(lr)]
    for assignment in ["training.early_stopping.enabled=false", *overrides]:
        command += ["--set", assignment]
    print(f"== {label}", flush=True)
    subprocess.run(command, check=True)
    return {"label": label, **json.loads(out.read_text())}


def agnews_subset() -> Path:
    directory = SPEED / "data" / "agnews"
    directory.mkdir(parents=True, exist_ok=True)
    rows = read_rows_headerless(DATASETS / "agnews" / "dev.tsv")
    for split, part in (("train", rows[:1500]), ("dev", rows[1500:1800]),
                        ("test", rows[1800:2300])):
        write_rows(directory / f"{split}.csv", part)
    return directory


def read_rows_headerless(path: Path) -> list[tuple[str, str]]:
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        return [(r[0], r[1]) for r in csv.reader(handle, delimiter="\t") if len(r) >= 2]


def tokenise_cache_timing() -> dict[str, float]:
    """CoNLL-2003 train (14k sentences) encoded for NER: a cache miss, then a hit."""
    import os
    import tempfile

    from transformers import AutoTokenizer

    from tunelab.config import parse_config
    from tunelab.data.token_cache import cached_encode
    from tunelab.models import resolve_model
    from tunelab.run_data import load_splits

    os.environ["TUNELAB_CACHE_DIR"] = tempfile.mkdtemp()
    conll = DATASETS / "conll2003"
    config = parse_config({"task": {"type": "token-classification"},
                           "data": {"train": str(conll / "train.txt"),
                                    "dev": str(conll / "valid.txt"),
                                    "test": str(conll / "test.txt")}})
    task, splits = load_splits(config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6").source)
    timings = {}
    for name in ("miss", "hit"):
        started = time.perf_counter()
        _, hit = cached_encode(task, splits.train, tokenizer)
        assert hit == (name == "hit")
        timings[name] = time.perf_counter() - started
    return timings


def main() -> None:
    sst2 = make_subset("sst2")
    rows = [contender(label, sst2, 1.0, LR, o) for label, o in ONE_EPOCH]
    accuracy_rows = [contender(label, sst2, 3.0, 1e-4, o) for label, o in THREE_EPOCHS]
    agnews = agnews_subset()
    truncation = [contender(label, agnews, 1.0, LR, o) for label, o in (
        ("AG News, max_length 128", []),
        ("AG News, truncate at 95th percentile", ["data.length_percentile=95"]))]
    cache = tokenise_cache_timing()
    (SPEED / "levers.json").write_text(json.dumps(
        {"one_epoch": rows, "three_epochs": accuracy_rows, "truncation": truncation,
         "cache": cache}, indent=2))
    write(rows, accuracy_rows, truncation, cache)


def write(rows: list[dict[str, Any]], accuracy_rows: list[dict[str, Any]],
          truncation: list[dict[str, Any]], cache: dict[str, float]) -> None:
    base = rows[1]["samples_per_second"]
    full_rss = rows[1]["peak_rss_mb"]
    lines = ["## Speed levers (`bench/speed/levers.py`)", "",
             f"Machine: {machine_line()}. MiniLM-L6 on the SST-2 speed subset (2000 train), "
             "batch 32, no early stopping. Ratios are to the default row of the same table, "
             "in the same run.", "",
             f"One epoch, lr {LR}:", "",
             "| setting | samples/s | vs default | peak RSS MB | vs default |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['samples_per_second']:.1f} | "
                     f"{r['samples_per_second'] / base:.2f}x | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] / full_rss:.2f}x |")
    ref = accuracy_rows[0]
    lines += ["", "Three epochs, lr 1e-4: accuracy with speed.", "",
              "| setting | train s | vs full | samples/s | test acc | best dev |",
              "|---|---|---|---|---|---|"]
    for r in accuracy_rows:
        lines.append(f"| {r['label']} | {r['train_seconds']:.0f} | "
                     f"{ref['train_seconds'] / r['train_seconds']:.2f}x faster | "
                     f"{r['samples_per_second']:.1f} | {r['test_acc']:.4f} | "
                     f"{max(a for _, a in r['curve']):.4f} |")
    t0, t1 = truncation
    lines += ["", "Truncation at the data's own length percentile (AG News, 1500 train, one "
              "epoch):", "", "| setting | samples/s | test acc |", "|---|---|---|",
              *[f"| {r['label']} | {r['samples_per_second']:.1f} | {r['test_acc']:.4f} |"
                for r in (t0, t1)],
              "", f"Tokenise once (CoNLL-2003 train, 14,041 sentences, NER alignment): "
              f"{cache['miss']:.1f} s to encode and store, {cache['hit']:.2f} s from the cache "
              f"({cache['miss'] / cache['hit']:.0f}x)."]
    lora = next(r for r in rows if r["label"].startswith("LoRA"))
    ratio = round(lora["peak_rss_mb"] / full_rss, 3)
    lines += ["", f"LoRA peak RSS / full fine-tuning peak RSS: **{ratio}**."]
    markdown = "\n".join(lines)
    print(markdown)
    update_section("speed_levers", markdown)
    update_results({"lora_rss_ratio": ratio})


if __name__ == "__main__":
    main()
