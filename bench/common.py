"""Shared by the benchmarks: where the datasets are, and how results are recorded.

`bench/results.json` is one flat JSON object shared by all benchmarks; each updates only
its own keys. `bench/RESULTS.md` holds one section per benchmark, replaced in place.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATASETS = ROOT.parent / "shared" / "datasets"
WORK = BENCH / "work"


def train_experiment(name: str, raw: dict[str, Any]) -> Any:
    """One experiment as a normal tunelab run under bench/work/runs; returns the RunResult."""
    import tunelab
    from tunelab.config import parse_config

    config = parse_config({"name": name, "output_dir": str(WORK / "runs"), "seed": 42, **raw},
                          source=f"bench:{name}")
    return tunelab.train(config, overwrite=True)


def write_rows(path: Path, rows: list[tuple[str, str]], header: tuple[str, str]) -> Path:
    """A two-column CSV with a header: (text, label) rows."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def save_row(name: str, row: dict[str, Any]) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.json").write_text(json.dumps(row, indent=2))


def saved_rows(names: list[str]) -> list[dict[str, Any]]:
    """The rows saved by earlier runs of these experiments, in the order given."""
    return [json.loads((WORK / f"{n}.json").read_text()) for n in names
            if (WORK / f"{n}.json").exists()]


def machine_line() -> str:
    import torch

    from tunelab.rundir import package_versions

    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"{versions}")


def timing_footer() -> str:
    return (f"Machine: {machine_line()}. Train seconds and samples/s include the dev\n"
            "evaluations, and were taken while other work shared the two cores: read them as\n"
            "upper bounds, not clean timings.")


def update_results(values: dict[str, Any]) -> None:
    path = BENCH / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")


def update_section(name: str, markdown: str) -> None:
    """Replace this benchmark's section of RESULTS.md, keeping the others."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    path.write_text(text)


def per_dataset_main(description: str, datasets: str, out: Path,
                     measure: Callable[[str], None], report: Callable[[], None]) -> None:
    """A benchmark's command line: measure each dataset (each skips what it has saved), or
    with --report only write the table from the saved rows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", default=datasets)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for data in args.datasets.split(","):
            measure(data)
    report()
