"""The text report of a run: scores against the baselines, then the per-class report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.record import RunRecord

ROW_NAMES = {
    "majority": "majority class",
    "probe": "frozen encoder + linear head",
    "model": "fine-tuned model",
}


def comparison_table(rows: dict[str, dict[str, float | int]], headline: Sequence[str],
                     model_name: str = ROW_NAMES["model"]) -> str:
    """One line per model (baselines first), then the gain of the model over each baseline."""
    width = max(len(f"gain over {name}") for name in ROW_NAMES.values()) + 2
    columns = [(metric, max(13, len(metric) + 2)) for metric in headline]
    lines = ["".ljust(width) + "".join(f"{m:>{c}}" for m, c in columns)]
    for key, metrics in rows.items():
        name = model_name if key == "model" else ROW_NAMES.get(key, key)
        lines.append(name.ljust(width) + "".join(
            f"{metrics.get(m, float('nan')):>{c}.4f}" for m, c in columns))
    model = rows.get("model")
    for key in ("majority", "probe"):
        if model and key in rows:
            lines.append(f"gain over {ROW_NAMES[key]}".ljust(width) + "".join(
                f"{100 * (model[m] - rows[key][m]):>+{c - 1}.2f}p" for m, c in columns))
    return "\n".join(lines)


def run_report(record: RunRecord, per_class: str, headline: Sequence[str],
               report_kind: str) -> str:
    train, sizes = record.train, record.sizes
    return "\n".join([
        f"tunelab run '{record.name}': {record.task} with {record.model} "
        f"(method {record.method}, {train.trainable_parameters:,} of "
        f"{train.total_parameters:,} parameters trained)",
        f"data: train {sizes['train']}, dev {sizes['dev']}, "
        f"test {sizes['test']}  (test: {record.sources['test']})",
        f"training: {train.seconds:.1f} s, {train.samples_per_second:.1f} samples/s, "
        f"{train.epochs:.2f} epochs, peak RSS {record.peak_rss_mb:.0f} MB, "
        f"best dev {record.metric} {train.best_dev_metric:.4f}",
        *(f"WARNING: {warning}" for warning in record.warnings),
        "",
        "Test scores (points = percentage points)",
        comparison_table(record.rows(), headline, ROW_NAMES["model"] if train.steps
                         else f"{record.method} (no training)"),
        *out_of_scope_lines(record),
        "",
        f"{report_kind} (test)",
        per_class.rstrip(),
        "",
    ])


def out_of_scope_lines(record: RunRecord) -> list[str]:
    fitted, test = record.out_of_scope, record.test
    if not fitted:
        return []
    return ["", f"out of scope: {fitted['score']} below {fitted['threshold']:.4g} (fitted on "
            f"dev: recall {fitted['dev_oos_recall']:.4f}, precision "
            f"{fitted['dev_oos_precision']:.4f}); test: in-scope accuracy "
            f"{test['in_scope_accuracy']:.4f}, out-of-scope recall {test['oos_recall']:.4f}, "
            f"precision {test['oos_precision']:.4f} (out_of_scope.png)"]


def eval_report(model_name: str, data: str, metrics: dict[str, float | int], per_class: str,
                headline: Sequence[str]) -> str:
    return "\n".join([
        f"tunelab eval: {model_name} on {data} ({metrics.get('n', 0)} examples)",
        "",
        comparison_table({"model": metrics}, headline),
        "",
        per_class.rstrip(),
        "",
    ])
