"""ONNX export, the heavy half: merge the method's adapter, export with torch.onnx, fuse
with ONNX Runtime's transformer optimizer, quantise to int8 (export/int8.py), then check the
result against PyTorch before anything is written to the run."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tunelab import registry
from tunelab.errors import ExportError
from tunelab.export import int8
from tunelab.export.check import cold_start_seconds, compare_backends
from tunelab.export.onnx import FP32, INT8, OnnxExporter, OnnxOptions, failures, report_markdown
from tunelab.export.runtime import OnnxModel, file_mb
from tunelab.rundir import atomic_path, write_json, write_text


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


class _LogitsAndEmbeddings(_LogitsOnly):
    """A sentence-embedding classifier's logits and the embedding they come from, so that
    an exported zero-shot model takes other labels per request (methods/label_sentences)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.model.embed(input_ids, attention_mask, token_type_ids)
        return self.model.classifier(embeddings), embeddings


def plain_model(model: Any, method_name: str, run_dir: Path) -> torch.nn.Module:
    """The model with the method's additions merged into its weights, on eager attention
    (ONNX Runtime's attention fusion matches the eager graph, not SDPA's)."""
    plain = registry.methods.get(method_name).for_export(model)
    if plain is None:
        raise ExportError(f"{run_dir}: method '{method_name}' has no plain model to export "
                          "(prefix, prompt and P-tuning add virtual tokens outside the "
                          "graph; prompt-lm scores each label with a language model), so "
                          "this run has no ONNX export; it is served with the "
                          "torch backend (`tunelab serve RUN`, `tunelab predict RUN` use it "
                          "already)")
    plain.set_attn_implementation("eager")
    return plain.eval()


def export_graph(model: torch.nn.Module, tokenizer: Any, path: Path, opset: int) -> None:
    sample = tokenizer(["a short example", "and a second, longer example text"],
                       padding=True, return_tensors="pt")
    token_types = sample.get("token_type_ids", torch.zeros_like(sample["input_ids"]))
    dynamic = {0: "batch", 1: "sequence"}
    embeds = hasattr(model, "embed")
    outputs = ["logits", "embeddings"] if embeds else ["logits"]
    with torch.inference_mode():
        torch.onnx.export(
            (_LogitsAndEmbeddings if embeds else _LogitsOnly)(model),
            (sample["input_ids"], sample["attention_mask"], token_types),
            str(path), input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=outputs, opset_version=opset, dynamo=False,
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic,
                          "token_type_ids": dynamic, **{name: {0: "batch"} for name in outputs}},
        )


def fuse(path: Path, config: Any) -> None:
    """Rewrite the graph in place with ORT's fused attention, GELU and layer-norm ops."""
    from onnxruntime.transformers import optimizer

    model_type = config.model_type if config.model_type in ("bert", "roberta") else "bert"
    fused = optimizer.optimize_model(str(path), model_type=model_type,
                                     num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    fused.save_model_to_file(str(path))


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Tracing and quantisation warn about what a user cannot act on (the tracer's constant
    folding, ORT's advice to pre-process); the export's own check is what counts."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(run_dir: Path, options: OnnxOptions) -> dict[str, Any]:
    """Write RUN/export/onnx/ (model.onnx, model.int8.onnx, report) or raise ExportError
    with the figures that failed the check; nothing is written then."""
    from tunelab.predictor import Predictor, dev_choice_data, labelled_check_data

    predictor = Predictor(run_dir, backend="torch")
    examples, source = labelled_check_data(predictor, options.data)
    # the recipe is chosen on dev; the file the report measures on only confirms it
    choice, choice_source = dev_choice_data(predictor, source) or (examples, source)
    model = plain_model(predictor.model, predictor.meta["method"], predictor.run_dir)
    target = OnnxExporter.folder(predictor.run_dir)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        with quiet_export():
            export_graph(model, predictor.tokenizer, tmp / FP32, options.opset)
            fuse(tmp / FP32, model.config)
        backends: dict[str, Any] = {"torch fp32": model, "onnx fp32": OnnxModel(tmp / FP32)}
        comparison, failed, tried = None, [], []
        for recipe in int8.recipes(options.int8) if options.quantize else (None,):
            if recipe is not None:
                with quiet_export():
                    int8.quantize(tmp / FP32, tmp / INT8, recipe)
                backends["onnx int8"] = OnnxModel(tmp / INT8)
            comparison = compare_backends(predictor.task, predictor.tokenizer, choice,
                                          backends)
            failed = failures(comparison, options)
            if not failed:
                break
            tried.append(f"{recipe}: {'; '.join(failed)}")
        assert comparison is not None
        if failed:
            raise ExportError(
                f"{run_dir}: export refused, {' | '.join(tried) if tried else '; '.join(failed)}"
                f" (checked on {len(choice)} examples of {choice_source}); nothing was "
                "written. Export fp32 only with --no-quantize, or loosen --min-agreement / "
                "--max-drop if this is expected")
        chosen_with = comparison
        if choice is not examples:
            comparison = compare_backends(predictor.task, predictor.tokenizer, examples,
                                          backends)
            if failed := failures(comparison, options):
                raise ExportError(
                    f"{run_dir}: export refused: {'; '.join(failed)} on {len(examples)} "
                    f"examples of {source}, though it passed on {choice_source}; nothing was "
                    "written. Try --int8 weight-only (the most exact recipe), export fp32 "
                    "only with --no-quantize, or loosen --min-agreement / --max-drop")
        probe = examples.inputs()[0]
        for name in backends:
            path = None if name == "torch fp32" else tmp / (INT8 if name.endswith("int8")
                                                             else FP32)
            comparison.cold_start_s[name] = cold_start_seconds(
                predictor.run_dir, "torch" if path is None else "onnx", path, probe)
        report = {
            "run": str(predictor.run_dir), "checked_on": source, "examples": len(examples),
            "chosen_on": choice_source, "chosen_with": {
                "examples": len(choice), "agreement": chosen_with.agreement,
                "metrics": chosen_with.metrics},
            "metric": comparison.metric,
            "files_mb": {name: file_mb(tmp / name) for name in (FP32, INT8)
                         if (tmp / name).exists()},
            "default": INT8 if options.quantize else FP32,
            "int8_recipe": recipe,
            "int8_weights": int8.DESCRIPTIONS[recipe] if recipe else None,
            "int8_refused": tried,
            **comparison.as_dict(),
        }
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", report_markdown(report))
    return report
