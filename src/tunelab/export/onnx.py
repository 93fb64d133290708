"""The ONNX exporter: a fused fp32 graph and an int8 one, each checked against
PyTorch before it is written. Served by ONNX Runtime (backends onnx and onnx-fp32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from tunelab.export.base import Exporter, ExportOptions

FP32, INT8 = "model.onnx", "model.int8.onnx"


class OnnxOptions(ExportOptions):
    quantize: bool = Field(default=True, description="Also write the int8 model")
    int8: str = Field(default="auto", pattern="^(auto|dynamic|weight-only)$",
                      description="int8 recipe: auto (the fastest that passes the check: "
                      "dynamic, then weight-only), dynamic or weight-only")
    opset: int = Field(default=17, ge=13, description="ONNX opset version")


class OnnxExporter(Exporter):
    name = "onnx"
    Options = OnnxOptions
    backends: ClassVar[dict[str, tuple[str, ...]]] = {"onnx": (INT8, FP32),
                                                      "onnx-fp32": (FP32,)}
    default_backend = "onnx"

    @classmethod
    def find(cls, run_dir: Path, backend: str) -> Path | None:
        found = super().find(run_dir, backend)
        if found is None:  # runs exported before exporters had their own folders
            legacy = Path(run_dir) / "export"
            found = next((legacy / n for n in cls.backends[backend] if (legacy / n).is_file()),
                         None)
        return found

    @classmethod
    def load(cls, path: Path, threads: int | None = None, spinning: bool = True) -> Any:
        from tunelab.export.runtime import OnnxModel

        return OnnxModel(path, threads, spinning)

    def export(self, run_dir: Path, options: ExportOptions) -> dict[str, Any]:
        from tunelab.export.onnx_graph import export_onnx

        return export_onnx(run_dir, options)  # type: ignore[arg-type]

    @staticmethod
    def markdown(report: dict[str, Any]) -> str:
        return report_markdown(report)


def failures(comparison: Any, options: ExportOptions) -> list[str]:
    failed = []
    reference = comparison.metrics["torch fp32"]
    for name in comparison.metrics:
        if name == "torch fp32":
            continue
        agreement = comparison.agreement[name]
        drop = (reference - comparison.metrics[name]) * 100
        if agreement < options.min_agreement:
            failed.append(f"{name} agrees with PyTorch on {agreement:.2%} of predictions "
                          f"(needs {options.min_agreement:.0%})")
        if drop > options.max_drop_points:
            failed.append(f"{name} {comparison.metric} drops {drop:.2f} pt (at most "
                          f"{options.max_drop_points} allowed)")
    return failed


def report_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Export report: {report['run']}", "",
             f"Checked on {report['examples']} examples of {report['checked_on']}; "
             f"metric: {report['metric']}. Default model: `{report['default']}`."
             + (f" int8: {report['int8_weights']}." if report.get("int8_weights") else "")
             + (f" The int8 recipe was chosen on {report['chosen_with']['examples']} examples"
                f" of {report['chosen_on']}." if report.get("chosen_on", report["checked_on"])
                != report["checked_on"] else "")
             + "".join(f" Refused there: {line}." for line in report.get("int8_refused", [])),
             "",
             "| backend | file MB | agreement with PyTorch | "
             f"{report['metric']} | batch-32 samples/s | 1-text latency p50 ms | "
             "cold start s (new process) |",
             "|---|---|---|---|---|---|---|"]
    files = {"onnx fp32": report["files_mb"].get(FP32), "onnx int8": report["files_mb"].get(INT8)}
    for name, metric in report["metrics"].items():
        size = files.get(name)
        lines.append(
            f"| {name} | {size if size is not None else '-'} | "
            f"{report['agreement'].get(name, 1.0):.4f} | {metric:.4f} | "
            f"{report['throughput'][name]:.1f} | {report['latency_ms'][name]:.2f} | "
            f"{report['cold_start_s'].get(name, float('nan')):.2f} |")
    return "\n".join(lines) + "\n"
