"""The compression table, its Pareto plot, and the choice of a variant under the user's
constraints (the largest metric loss allowed, and what to optimise)."""

from __future__ import annotations

from typing import Any

from tunelab.compress.measure import Measured

SELECTED = "selected.json"
TARGETS = {"latency": (lambda r: r.latency_p50_ms, min), "size": (lambda r: r.size_mb, min),
           "throughput": (lambda r: r.throughput, max)}


def select(rows: list[Measured], max_drop: float, target: str) -> Measured | None:
    """The best variant by `target` among those losing at most `max_drop` points (on dev
    where it was measured, else on the measured data)."""
    allowed = [row for row in rows if (row.drop_pts if row.dev_drop_pts is None
                                       else row.dev_drop_pts) <= max_drop]
    if not allowed:
        return None
    key, best = TARGETS[target]
    return best(allowed, key=key)


def pareto(rows: list[Measured]) -> list[Measured]:
    """The variants no other beats on both metric and latency, fastest first."""
    front = [r for r in rows if not any(
        o.metric >= r.metric and o.latency_p50_ms <= r.latency_p50_ms
        and (o.metric > r.metric or o.latency_p50_ms < r.latency_p50_ms) for o in rows)]
    return sorted(front, key=lambda r: r.latency_p50_ms)


def markdown(report: dict[str, Any]) -> str:
    rows = report["variants"]
    base = rows[0]
    lines = [
        f"# Compression report: {report['run']}", "",
        f"Measured on {report['examples']} examples of {report['measured_on']}; metric: "
        f"{report['metric']}. Agreement and loss are against the original run on PyTorch; "
        "ratios are to it, measured in the same run. Selected on "
        f"{report.get('selected_on', 'the measured data')} (at most {report['max_drop']} "
        f"points lost, best {report['target']}): "
        f"**{report['selected'] or 'none qualifies'}**.", "",
        f"| variant | model | {report['metric']} | loss pts | dev loss pts | agreement | MB | "
        "size ratio | batch-1 p50 ms | p99 ms | batch-32 samples/s | throughput ratio | "
        "cold start s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        mark = " ✓" if row["name"] == report["selected"] else ""
        lines.append(
            f"| {row['name']}{mark} | {row['file']} | {row['metric']:.4f} | "
            f"{row['drop_pts']:+.2f} | {_points(row.get('dev_drop_pts'))} | "
            f"{row['agreement']:.4f} | {row['size_mb']:.1f} | "
            f"{row['size_mb'] / base['size_mb']:.2f} | {row['latency_p50_ms']:.2f} | "
            f"{row['latency_p99_ms']:.2f} | {row['throughput']:.1f} | "
            f"{row['throughput'] / base['throughput']:.2f} | {row['cold_start_s']:.2f} |")
    lines += ["", *[f"Note: {note}" for note in report.get("notes", [])]]
    return "\n".join(lines).rstrip() + "\n"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def plot_pareto(fig: Any, rows: list[Measured], chosen: Measured | None, metric: str) -> None:
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter([r.latency_p50_ms for r in rows], [r.metric for r in rows], color="tab:blue")
    front = pareto(rows)
    ax.plot([r.latency_p50_ms for r in front], [r.metric for r in front], color="tab:orange",
            label="Pareto front")
    for row in rows:
        ax.annotate(row.name, (row.latency_p50_ms, row.metric), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    if chosen is not None:
        ax.scatter([chosen.latency_p50_ms], [chosen.metric], s=160, facecolors="none",
                   edgecolors="tab:green", label=f"selected: {chosen.name}")
    ax.set_xlabel("batch-1 latency p50 (ms)")
    ax.set_ylabel(metric)
    ax.set_title("Compressed variants: quality against latency")
    ax.legend(loc="lower right")
    fig.tight_layout()
