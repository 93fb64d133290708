"""`tunelab compress RUN`, end to end: check the input, build the variants, measure them,
select one, and write RUN/compress/ (report.json, report.md, pareto.png, selected.json).
Bad input is refused before anything is trained or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.compress.build import (
    FOLDER,
    STUDENTS,
    CompressOptions,
    check_data,
    original_int8,
    train_student,
)
from tunelab.compress.measure import Measured, Variant, measure
from tunelab.compress.report import SELECTED, markdown, plot_pareto, select
from tunelab.errors import ExportError
from tunelab.evaluation.plots import save_figure
from tunelab.rundir import write_json, write_text

DYNAMIC = "original.dynamic.int8.onnx"


def compress(run_dir: Path, options: CompressOptions) -> dict[str, Any]:
    predictor, examples, source, dev = check_data(Path(run_dir), options.data)
    run_dir = predictor.run_dir
    folder = run_dir / FOLDER
    (folder / SELECTED).unlink(missing_ok=True)  # measure the run itself, not a variant
    variants = [Variant("original", run_dir, "torch")]
    notes = []
    try:
        original_int8(run_dir)
        variants.append(Variant("int8", run_dir, "onnx"))
        variants.append(Variant("int8 (dynamic)", run_dir, "onnx", dynamic_int8(run_dir, folder)))
    except ExportError as error:
        notes.append(f"int8 of the original: {error}")
    for name in STUDENTS:
        student = train_student(run_dir, name, options, folder / "runs")
        export_student(student)
        variants += [Variant(name, student, "onnx-fp32"), Variant(f"{name} + int8", student,
                                                                   "onnx")]
    rows = measure(variants, examples, dev[0] if dev else None)
    chosen = select(rows, options.max_drop, options.target)
    report = {"run": str(run_dir), "measured_on": source, "examples": len(examples),
              "selected_on": f"dev: {dev[1]}" if dev is not None else source,
              "metric": predictor.task.default_metric, "max_drop": options.max_drop,
              "target": options.target, "selected": chosen.name if chosen else None,
              "notes": notes, "variants": [row.as_dict() for row in rows]}
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", markdown(report))
    save_figure(folder / "pareto.png", lambda fig: plot_pareto(fig, rows, chosen,
                                                              report["metric"]))
    if chosen is not None and chosen.name != "original":
        write_json(folder / SELECTED, selection(chosen, run_dir))
    return report


def export_student(student: Path) -> None:
    """fp32 and dynamic int8 ONNX of a student, with the gate off: the table measures
    agreement with the original run, which is what counts here."""
    from tunelab.api import export

    export(student, int8="dynamic", min_agreement=0.0, max_drop_points=100.0)


def dynamic_int8(run_dir: Path, folder: Path) -> Path:
    """The original's fp32 graph in dynamic int8, the fastest recipe, whether or not it
    passes the export's gate: the table shows what it costs."""
    from tunelab.export import int8
    from tunelab.export.onnx import OnnxExporter
    from tunelab.export.onnx_graph import quiet_export

    fp32 = OnnxExporter.find(run_dir, "onnx-fp32")
    assert fp32 is not None
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_export():
        int8.quantize(fp32, folder / DYNAMIC, "dynamic")
    return folder / DYNAMIC


def selection(chosen: Measured, run_dir: Path) -> dict[str, Any]:
    """What `predict` and `serve` load for this run by default: paths relative to the run,
    so that it can move."""
    return {"variant": chosen.name, "backend": chosen.backend,
            "run": str(Path(chosen.run).relative_to(run_dir)),
            "file": f"{FOLDER}/{DYNAMIC}" if chosen.file == DYNAMIC else None}
