"""The public Python API: train, evaluate, load, export, and the model's life
after training (promote, rollback, feedback, drift checks, retrain). The CLI and the
service call these; they call training, evaluation and export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig, load_config
from tunelab.evaluation.plots import save_figure
from tunelab.evaluation.report import eval_report
from tunelab.lifecycle import check_drift, export_feedback, promote, rollback
from tunelab.lifecycle_options import MonitorOptions, RetrainOptions
from tunelab.predictor import Predictor
from tunelab.rundir import write_json, write_text
from tunelab.runner import RunResult, train_run
from tunelab.tasks.base import EvalResult

__all__ = ["MonitorOptions", "RetrainOptions", "check_drift", "compress", "evaluate", "explain",
           "export", "export_feedback", "load", "mask", "promote", "retrain", "rollback",
           "train"]


def train(config: RunConfig | str | Path, overrides: list[str] | None = None,
          resume: bool = False, overwrite: bool = False) -> RunResult:
    """Fine-tune as the config says; returns the run directory, metrics and report."""
    if not isinstance(config, RunConfig):
        config = load_config(Path(config), overrides)
    return train_run(config, resume=resume, overwrite=overwrite)


def load(run: str | Path, backend: str = "auto") -> Predictor:
    """A trained run, ready for `.predict(texts)` and `.evaluate(file)`. backend "auto" uses
    the exported int8 ONNX model when `tunelab export` has written one."""
    return Predictor(run, backend)


def evaluate(run: str | Path, data: str | Path, overrides: list[str] | None = None,
             backend: str = "torch") -> tuple[EvalResult, Path]:
    """Score a run on a labelled file; writes report.txt, metrics.json and plots under
    RUN/eval/<file name>/ and returns the result and that folder."""
    predictor = Predictor(run, backend)
    result = predictor.evaluate(data, overrides)
    out = predictor.run_dir / "eval" / re.sub(r"[^\w.-]+", "_", Path(data).name)
    report = eval_report(str(predictor.run_dir), str(data), result.metrics, result.report,
                         predictor.task.headline_metrics)
    write_json(out / "metrics.json", {"data": str(data), **result.metrics})
    write_text(out / "report.txt", report)
    for name, draw in result.figures.items():
        save_figure(out / name, draw)
    result.report = report
    return result, out


def export(run: str | Path, format: str = "onnx", **options: Any) -> dict[str, Any]:
    """Export a run with a registered exporter (ONNX: merged, fused, int8) after checking it
    agrees with PyTorch; returns the export report. Raises ExportError, writing nothing,
    when the check fails. `options` are the exporter's Options fields."""
    from tunelab import registry
    from tunelab.config import validate_options

    exporter = registry.exporters.get(registry.exporters.check(format))()
    return exporter.export(Path(run), validate_options(exporter.Options, options))


def compress(run: str | Path, **options: Any) -> dict[str, Any]:
    """Build and measure the run's compressed variants (int8, pruned, distilled, each in
    int8 too) and select the best within `max_drop` points; `predict` and `serve` then use
    it. Returns the report; writes RUN/compress/. `options`: CompressOptions fields."""
    from tunelab.compress.build import CompressOptions
    from tunelab.compress.run import compress as run_compress
    from tunelab.config import validate_options

    return run_compress(Path(run), validate_options(CompressOptions, options))


def retrain(run: str | Path, options: RetrainOptions | None = None, **values: Any) -> Any:
    """Continue a run on new examples plus rehearsal; promote it only if it learned them
    without forgetting (see tunelab.retrain)."""
    from tunelab.retrain import retrain as run_retrain

    return run_retrain(Path(run), options or RetrainOptions(**values))


def explain(model: Predictor | str | Path, text: str, label: str | None = None,
            method: str = "auto") -> dict[str, Any]:
    """Per-word attributions for the prediction (or `label`): Integrated Gradients on a
    PyTorch model, occlusion on an exported one (see tunelab.explain)."""
    from tunelab.explain.explainer import explain as run_explain

    predictor = model if isinstance(model, Predictor) else Predictor(model)
    return run_explain(predictor, text, label, method)


def mask(texts: list[str], types: list[str] | None = None,
         names_run: str | Path | None = None, link_rows: bool = False) -> list[str]:
    """The texts with personal data replaced by numbered placeholders, numbered per text or,
    with `link_rows`, across the list (see tunelab.privacy and `data.mask_pii`)."""
    from tunelab.config import validate_options
    from tunelab.privacy.examples import masker_for
    from tunelab.privacy.options import MaskOptions

    chosen = {"types": types} if types else {}
    options = validate_options(MaskOptions, {**chosen, "names_run": names_run,
                                             "link_rows": link_rows})
    masker = masker_for(options.model_dump_json())
    with masker.session():
        return masker.mask(texts)
