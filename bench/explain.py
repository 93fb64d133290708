"""Explanations: are they faithful, and what do they cost?

Deletion test: for each test text, delete the k words an explanation ranks highest and see
how far the explained (predicted) label's probability falls, against deleting k random
words. Integrated Gradients on the PyTorch model and occlusion on the int8 ONNX model the
service loads, each scored on the model it explains. Speed: occlusion on the int8 ONNX
model, texts of 20 words, against plain batch-1 prediction of the same texts, same run.

    python bench/explain.py [--texts 200] [--report]

Each part is saved under bench/work/explain/ as it completes; a rerun skips it.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from typing import Any

import numpy as np
from common import BENCH, DATASETS, WORK, machine_line, update_results, update_section

OUT = WORK / "explain"
RUNS = {"sst2": WORK / "methods" / "runs" / "sst2-8000__full__0.0001__e3__every100",
        "banking77": WORK / "methods" / "runs" / "banking77__full__0.0001__e3__every100"}
METHODS = {"integrated-gradients": "torch", "occlusion": "onnx"}
KS = (1, 2, 3, 4, 5)
RANDOM_DRAWS = 3


def test_texts(data: str, n: int, seed: int = 0) -> list[str]:
    if data == "sst2":
        path, column, delimiter = DATASETS / "sst2" / "test.tsv", "sentence", "\t"
    else:
        path, column, delimiter = DATASETS / "banking77" / "test.csv", "text", ","
    with path.open(encoding="utf-8") as handle:
        texts = [row[column].strip() for row in csv.DictReader(handle, delimiter=delimiter)]
    texts = [t for t in texts if len(t.split()) >= 6]  # room to delete 5 words
    return random.Random(seed).sample(texts, min(n, len(texts)))


def deletion(data: str, method: str, n: int) -> dict[str, Any]:

    import tunelab
    from tunelab.explain.explainer import explain
    from tunelab.explain.target import Words, class_probs

    model = tunelab.load(RUNS[data], METHODS[method])
    rng = random.Random(1)
    top: dict[int, list[float]] = {k: [] for k in KS}
    rand: dict[int, list[float]] = {k: [] for k in KS}
    started = time.perf_counter()
    for text in test_texts(data, n):
        got = explain(model, text, method=method)
        words = Words.of(text)
        label = model.task.labels.index(got["label"])
        order = list(np.argsort([-w["score"] for w in got["words"]]))
        variants = [text]
        for k in KS:
            variants.append(words.without(set(order[:k])))
            variants += [words.without(set(rng.sample(range(len(words.words)), k)))
                         for _ in range(RANDOM_DRAWS)]
        logits = model.task.logits(model.model, model.tokenizer, variants, None, 64)
        probs = class_probs(model.task, logits)[:, label]
        at = 1
        for k in KS:
            top[k].append(float(probs[0] - probs[at]))
            rand[k].append(float(np.mean(probs[0] - probs[at + 1:at + 1 + RANDOM_DRAWS])))
            at += 1 + RANDOM_DRAWS
    return {"data": data, "method": method, "backend": METHODS[method], "texts": n,
            "seconds": time.perf_counter() - started,
            "top": {k: statistics.mean(v) for k, v in top.items()},
            "random": {k: statistics.mean(v) for k, v in rand.items()},
            "gap3_sd": statistics.stdev([a - b for a, b in zip(top[3], rand[3], strict=True)])}


def speed(n: int) -> dict[str, Any]:
    import tunelab
    from tunelab.explain.explainer import explain

    texts = [" ".join(t.split()[:20]) for t in test_texts("sst2", 2000)
             if len(t.split()) >= 20][:n]
    model = tunelab.load(RUNS["sst2"], "onnx")
    explain(model, texts[0])  # warm-up
    model.predict(texts[0])
    started = time.perf_counter()
    for text in texts:
        model.predict(text, batch_size=1)
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    for text in texts:
        explain(model, text)
    explain_s = time.perf_counter() - started
    return {"texts": len(texts), "words": 20, "explain_texts_per_s": len(texts) / explain_s,
            "predict_texts_per_s": len(texts) / predict_s}


def plot(curves: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6))
    axes = figure.subplots(1, 2)
    for ax, data in zip(axes, RUNS, strict=True):
        for row in (r for r in curves if r["data"] == data):
            ks = [int(k) for k in row["top"]]
            ax.plot(ks, list(row["top"].values()), marker="o",
                    label=f"{row['method']}: top-k words")
            ax.plot(ks, list(row["random"].values()), linestyle="--",
                    label=f"{row['method']}: random k words")
        ax.set_title(f"{data}: deleting words")
        ax.set_xlabel("k words deleted")
        ax.set_ylabel("drop in the predicted label's probability")
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(BENCH / "explain_deletion.png", dpi=110)


def report(parts: dict[str, Any]) -> None:
    curves = [v for k, v in parts.items() if k.startswith("deletion")]
    rows = ["| data | method (model) | texts | drop, top 1 / 3 / 5 words | drop, random 1 / 3 / 5 "
            "| gap at 3 (sd) | seconds |", "|---|---|---|---|---|---|---|"]
    for r in curves:
        t, rnd = r["top"], r["random"]
        rows.append(f"| {r['data']} | {r['method']} ({r['backend']}) | {r['texts']} | "
                    f"{t['1']:.3f} / {t['3']:.3f} / {t['5']:.3f} | {rnd['1']:.3f} / "
                    f"{rnd['3']:.3f} / {rnd['5']:.3f} | {t['3'] - rnd['3']:.3f} "
                    f"({r['gap3_sd']:.3f}) | {r['seconds']:.0f} |")
    text = ["Conditions: the full fine-tuning runs of `bench/methods.py` (MiniLM-L6, SST-2 "
            "8000-example sample; Banking77), seed 42; test texts of 6 words or more, a "
            "seeded sample; random deletions averaged over 3 draws per text. "
            "Integrated Gradients: 32 steps from an all-padding baseline, on PyTorch; "
            "occlusion: one word removed at a time, on the int8 ONNX model the service loads. "
            "Each method is scored on the model it explains. Seconds: the whole deletion test "
            "(explanations and the deletion passes), on 2 cores.", "", *rows, "",
            "![deletion curves](explain_deletion.png)"]
    results: dict[str, Any] = {}
    for r in curves:
        if r["data"] == "sst2":
            gap = round(r["top"]["3"] - r["random"]["3"], 4)
            key = ("explain_deletion_gap" if r["method"] == "occlusion"
                   else "explain_deletion_gap_ig")
            results[key] = gap
    if "speed" in parts:
        s = parts["speed"]
        text += ["", f"Speed, int8 ONNX, {s['texts']} SST-2 test texts cut to 20 words, one at "
                 f"a time, 2 threads{' (beside another benchmark)' if s.get('shared') else ''}"
                 f": occlusion {s['explain_texts_per_s']:.1f} texts/s; plain prediction "
                 f"{s['predict_texts_per_s']:.1f} texts/s in the same run "
                 f"({s['predict_texts_per_s'] / s['explain_texts_per_s']:.1f}x the cost of "
                 "a prediction)."]
        results["explain_onnx_texts_per_s"] = round(s["explain_texts_per_s"], 1)
    text += ["", f"Machine: {machine_line()}."]
    plot(curves)
    update_section("explain", "## Explanations (`python bench/explain.py`)\n\n"
                   + "\n".join(text))
    update_results(results)
    print("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--speed-texts", type=int, default=100)
    parser.add_argument("--shared", action="store_true",
                        help="mark the speed figure as taken beside other work")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    steps: dict[str, Any] = {}
    for data in RUNS:
        for method in METHODS:
            steps[f"deletion-{data}-{method}"] = (
                lambda data=data, method=method: deletion(data, method, args.texts))
    steps["speed"] = lambda: {**speed(args.speed_texts), "shared": args.shared}
    parts: dict[str, Any] = {}
    for name, step in steps.items():
        saved = OUT / f"{name}.json"
        if not saved.is_file() and not args.report:
            print(f"--- {name}", flush=True)
            saved.write_text(json.dumps(step(), indent=2))
        if saved.is_file():
            parts[name] = json.loads(saved.read_text())
    report(parts)


if __name__ == "__main__":
    main()
