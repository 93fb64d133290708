"""Serving an exported model without torch: cold start and memory of `tunelab serve`.

    python bench/torchfree.py            # 5 starts of each variant, alternating

Each start is a fresh `tunelab serve` process on the Banking77 full fine-tuning run of
`bench/methods.py` (MiniLM-L6), or where that run is not here, on the shipped sentiment
example trained with its own config (MiniLM-L6 as well): the int8 ONNX export, which
imports neither torch nor transformers, against the same run on the PyTorch backend,
measured in the same run. Cold start: from the process start until its first prediction is
answered. Memory: the server's resident set once the masker (on by default) has loaded,
which --log-texts makes happen before the first answer and the default lets happen in the
background.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import BENCH, WORK, free_port, machine_line, update_results, update_section

METHODS_RUN = WORK / "methods" / "runs" / "banking77__full__0.0001__e3__every100"
EXAMPLE_RUN = WORK / "torchfree" / "runs" / "demo-sentiment"
VARIANTS = {"onnx int8 (no torch)": ("onnx", []),
            "onnx int8 (no torch), --log-texts": ("onnx", ["--log-texts"]),
            "torch, --log-texts": ("torch", ["--log-texts"])}
SETTLE_S = 8.0  # long enough for the masker to load in the background


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def exported_run() -> Path:
    """The methods benchmark's Banking77 run if it is here, else the sentiment example,
    trained (about a minute) and exported once."""
    if (METHODS_RUN / "export").is_dir():
        return METHODS_RUN
    if not (EXAMPLE_RUN / "export" / "onnx" / "model.int8.onnx").is_file():
        import tunelab
        from tunelab.config import load_config

        config = load_config(BENCH.parent / "examples" / "sentiment" / "config.yaml",
                             [f"output_dir={EXAMPLE_RUN.parent}"])
        tunelab.train(config, overwrite=True)
        tunelab.api.export(EXAMPLE_RUN)
    return EXAMPLE_RUN


def one_start(run: Path, backend: str, flags: list[str], store: Path) -> dict[str, Any]:
    port = free_port()
    body = json.dumps({"texts": ["my card has not arrived yet"]}).encode()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "serve", str(run), "--backend", backend,
         "--port", str(port), "--no-auth", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TUNELAB_DB_URL": f"sqlite:///{store}"})
    try:
        while True:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", body,
                                             {"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=10).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError(f"tunelab serve --backend {backend} did not "
                                       "answer") from None
                time.sleep(0.01)
        cold = time.perf_counter() - started
        time.sleep(SETTLE_S)
        loaded = Path(f"/proc/{server.pid}/maps").read_text()
        return {"cold_start_s": cold, "rss_mb": rss_mb(server.pid),
                "torch_loaded": "/torch/lib/" in loaded,
                "masker_loaded": "/presidio" in loaded or "/spacy/" in loaded}
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(results: dict[str, Any]) -> None:
    run = results.get("run", METHODS_RUN.name)
    rows, base = results["rows"], results["rows"]["torch, --log-texts"]
    lines = ["| variant | cold start s (median) | range | x torch | RSS MB (median) | x torch | "
             "torch loaded | masker loaded |", "|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        low, high = row["cold_start_range"]
        lines.append(f"| {name} | {row['cold_start_s']:.2f} | {low:.2f} to {high:.2f} | "
                     f"{row['cold_start_s'] / base['cold_start_s']:.2f} | {row['rss_mb']:.0f} | "
                     f"{row['rss_mb'] / base['rss_mb']:.2f} | {row['torch_loaded']} | "
                     f"{row['masker_loaded']} |")
    text = [f"Conditions: `{run}` (MiniLM-L6), {results['starts']} fresh "
            "`tunelab serve --no-auth` processes per variant, alternating, with personal-data "
            "masking on (the default; --log-texts loads it before the first answer, otherwise "
            "it loads after the first answer is sent); cold start: process start to the first "
            f"answered /v1/predict; RSS: the server's resident set {SETTLE_S:g} s after that "
            "answer, when the masker is in; a SQLite store kept from start to start, as a "
            "restarted service's is (the first start creates it). Nothing else ran on the machine. "
            f"Machine: {machine_line()}.", "", *lines]
    onnx = rows["onnx int8 (no torch)"]
    update_results({"torchfree_rss_mb": round(onnx["rss_mb"], 1),
                    "torchfree_cold_start_s": round(onnx["cold_start_s"], 2)})
    update_section("torchfree", "## Serving without torch (`python bench/torchfree.py`)\n\n"
                   + "\n".join(text))
    print("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    saved = WORK / "torchfree.json"
    if not args.report:
        run = exported_run()
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.starts):
                for name, (backend, flags) in VARIANTS.items():
                    samples[name].append(one_start(run, backend, flags,
                                                   Path(tmp) / f"{backend}.db"))
                    print(name, samples[name][-1], flush=True)
        rows = {name: {"cold_start_s": statistics.median(s["cold_start_s"] for s in runs),
                       "cold_start_range": [round(f(s["cold_start_s"] for s in runs), 2)
                                            for f in (min, max)],
                       "rss_mb": statistics.median(s["rss_mb"] for s in runs),
                       "torch_loaded": any(s["torch_loaded"] for s in runs),
                       "masker_loaded": all(s["masker_loaded"] for s in runs)}
                for name, runs in samples.items()}
        saved.write_text(json.dumps({"starts": args.starts, "run": run.name, "rows": rows},
                                    indent=2))
    report(json.loads(saved.read_text()))


if __name__ == "__main__":
    main()
