"""tunelab's int8 recipes, and which nodes cost int8 its agreement with PyTorch: dynamic
int8 of the fused MiniLM graph with groups of nodes kept in fp32, 7-bit and weight-only
int8, on SST-2, Banking77 and CoNLL-2003 runs: agreement with PyTorch, the metric, and
batch-32 throughput as ratios to the all-int8 model and the fp32 graph, same run.

    python bench/int8.py [--report]

Each (dataset, variant) row is saved under bench/work/int8/ as it completes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import WORK, machine_line, per_dataset_main, update_results, update_section

OUT = WORK / "int8"
RUNS = {"sst2": "sst2-8000__full__0.0001__e3__every100",
        "banking77": "banking77__full__0.0001__e3__every100",
        "conll2003": "conll2003-3000__full__0.0001__e3__every100__head-auto"}


def node_groups(model_path: Path) -> dict[str, list[str]]:
    """Group name -> node names of the graph at `model_path`."""
    import onnx

    nodes = {n.name: n.op_type for n in onnx.load(str(model_path), load_external_data=False)
             .graph.node}
    layers = sorted({n.split("/layer.")[1].split("/")[0] for n in nodes if "/layer." in n},
                    key=int)
    last = layers[-1] if layers else None
    return {
        "head": [n for n, op in nodes.items() if op == "Gemm" or "classifier" in n],
        "embeddings": [n for n, op in nodes.items() if op == "EmbedLayerNormalization"],
        "attention": [n for n, op in nodes.items() if op == "Attention"],
        "attention output": [n for n in nodes if "attention/output/dense" in n],
        "last layer": [n for n in nodes if last is not None and f"/layer.{last}/" in n]
        + [n for n, op in nodes.items() if op == "Attention" and n.endswith(f"_{last}")],
        "ffn output": [n for n in nodes if "/output/dense/MatMul" in n and "attention" not in n],
    }


def kept_fp32(model_path: Path, names: tuple[str, ...]) -> list[str]:
    groups = node_groups(model_path)
    return [node for name in names for node in groups[name]]


RECIPE_VARIANTS = {"dynamic 7-bit": "dynamic-7bit", "weight-only": "weight-only"}
VARIANTS = {"all int8": (), "head fp32": ("head",), "embeddings fp32": ("embeddings",),
            "head + embeddings fp32": ("head", "embeddings"),
            "head + last layer fp32": ("head", "last layer"),
            "head + attention output fp32": ("head", "attention output"),
            "head + fused attention fp32": ("head", "attention"),
            "head + FFN output fp32": ("head", "ffn output")}


def measure(data: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import tunelab
    from tunelab.export import int8
    from tunelab.export.runtime import OnnxModel, file_mb
    from tunelab.predictor import labelled_check_data

    run = WORK / "methods" / "runs" / RUNS[data]
    if not run.is_dir():
        print(f"skip {data}: no run at {run}")
        return
    fp32 = run / "export" / "onnx" / "model.onnx"
    predictor = tunelab.load(run, "torch")
    examples, _ = labelled_check_data(predictor, None)
    task, tokenizer = predictor.task, predictor.tokenizer
    reference = task.logits_for_examples(predictor.model, tokenizer, examples, 32)
    torch_metric = task.evaluate(examples, reference).metrics[task.default_metric]
    with tempfile.TemporaryDirectory() as tmp:
        recipes = {v: () for v in (*RECIPE_VARIANTS, "fp32 graph")}
        for variant, names in {**VARIANTS, **recipes}.items():
            kept = kept_fp32(fp32, names)
            saved = OUT / f"{data}__{variant.replace(' ', '_').replace('+', 'and')}.json"
            if saved.is_file():
                continue
            target = Path(tmp) / "model.int8.onnx"
            if variant == "fp32 graph":
                target = fp32
            elif variant in RECIPE_VARIANTS:
                int8.quantize(fp32, target, RECIPE_VARIANTS[variant])
            else:
                quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8,
                                 per_channel=True, nodes_to_exclude=kept,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            model = OnnxModel(target)
            task.logits_for_examples(model, tokenizer, examples.subset(range(64)), 32)  # warm
            started = time.perf_counter()
            logits = task.logits_for_examples(model, tokenizer, examples, 32)
            seconds = time.perf_counter() - started
            row = {"data": data, "variant": variant, "kept_fp32": len(kept),
                   "examples": len(examples), "agreement": task.agreement(reference, logits),
                   "metric": task.evaluate(examples, logits).metrics[task.default_metric],
                   "torch_metric": torch_metric, "samples_per_s": len(examples) / seconds,
                   "mb": file_mb(target)}
            saved.write_text(json.dumps(row, indent=2))
            print(row, flush=True)


AUTO_ORDER = ("all int8", "dynamic 7-bit", "weight-only")  # tunelab export's int8 ladder


def auto_pick(rows: list[dict], data: str) -> dict | None:
    """The recipe `tunelab export` keeps at its default gate (99% agreement, 1 point)."""
    by_variant = {r["variant"]: r for r in rows if r["data"] == data}
    return next((by_variant[v] for v in AUTO_ORDER if v in by_variant
                 and by_variant[v]["agreement"] >= 0.99
                 and (by_variant[v]["torch_metric"] - by_variant[v]["metric"]) * 100 <= 1.0),
                None)


def report() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    lines = ["| data | int8 variant (fp32 nodes) | agreement | metric (PyTorch) | drop pts | "
             "MB | batch-32 throughput vs all int8 | vs fp32 graph |",
             "|---|---|---|---|---|---|---|---|"]
    base = {r["data"]: r["samples_per_s"] for r in rows if r["variant"] == "all int8"}
    fp32 = {r["data"]: r["samples_per_s"] for r in rows if r["variant"] == "fp32 graph"}
    for r in rows:
        drop = (r["torch_metric"] - r["metric"]) * 100
        ratio = r["samples_per_s"] / base[r["data"]] if r["data"] in base else float("nan")
        vs_fp32 = r["samples_per_s"] / fp32[r["data"]] if r["data"] in fp32 else float("nan")
        lines.append(f"| {r['data']} | {r['variant']} ({r['kept_fp32']}) | {r['agreement']:.4f} "
                     f"| {r['metric']:.4f} ({r['torch_metric']:.4f}) | {drop:+.2f} | {r['mb']} "
                     f"| {ratio:.2f} | {vs_fp32:.2f} |")
    picks = {data: auto_pick(rows, data) for data in sorted({r["data"] for r in rows})}
    chosen = "; ".join(f"{d}: {p['variant']} ({p['agreement']:.4f}, "
                       f"{(p['torch_metric'] - p['metric']) * 100:+.2f} pt)" if p else
                       f"{d}: none passes" for d, p in picks.items())
    text = "\n".join([
        "Conditions: the full fine-tuning runs of `bench/methods.py` (seed 42), their fused "
        "fp32 ONNX graph; `all int8` is `quantize_dynamic` with per-channel int8 weights, "
        "the rows with fp32 nodes leave the named nodes out of it; `dynamic 7-bit` and "
        "`weight-only` are the recipes of `src/tunelab/export/int8.py`; scored on each "
        "run's test file (SST-2 test.tsv, Banking77 test.csv, CoNLL-2003 test.txt; "
        "CoNLL's metric is entity F1, its agreement the share of words whose tag agrees). "
        "Throughput: one pass, batch 32, ratios to the all-int8 model and to the fp32 graph "
        f"measured in the same run. Machine: {machine_line()}.", "",
        f"What `tunelab export` keeps at its default gate (the first of dynamic, 7-bit, "
        f"weight-only to agree on 99% and lose at most 1 point): {chosen}.", "", *lines])
    update_section("int8", "## int8 recipes, and which nodes cost int8 its agreement "
                   "(`python bench/int8.py`)\n\n" + text)
    results = {"int8_study_agreement_all_int8": round(min(
        (r["agreement"] for r in rows if r["variant"] == "all int8"), default=0.0), 4)}
    if picks and all(picks.values()):
        results["int8_agreement"] = round(min(p["agreement"] for p in picks.values()), 4)
        results["int8_drop_pts_max"] = round(max(
            (p["torch_metric"] - p["metric"]) * 100 for p in picks.values()), 2)
    update_results(results)
    print(text)


def main() -> None:
    per_dataset_main(__doc__.splitlines()[0], "sst2,banking77,conll2003", OUT, measure, report)


if __name__ == "__main__":
    main()
