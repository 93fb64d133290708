"""ONNX export: merged, fused and quantised graphs that agree with PyTorch, and a refusal
that writes nothing when they do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT
from test_token_classification import conll_file

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ExportError
from tunelab.predictor import Predictor


def trained(config: dict[str, Any], **changes: Any) -> Path:
    return tunelab.train(parse_config({**config, **changes}), overwrite=True).run_dir


def test_export_matches_pytorch_and_becomes_the_default(tiny_config: dict[str, Any]) -> None:
    run = trained(tiny_config)
    other = run / "export" / "other-format"  # another exporter's folder
    other.mkdir(parents=True)
    (other / "model.bin").write_text("kept")
    report = tunelab.api.export(run)
    export = run / "export" / "onnx"
    assert (other / "model.bin").read_text() == "kept", "an exporter writes only its folder"
    for name in ("model.onnx", "model.int8.onnx", "report.json", "report.md"):
        assert (export / name).is_file(), name
    assert report["agreement"]["onnx fp32"] == 1.0
    assert report["agreement"]["onnx int8"] >= 0.99
    assert set(report["throughput"]) == {"torch fp32", "onnx fp32", "onnx int8"}
    assert json.loads((export / "report.json").read_text())["default"] == "model.int8.onnx"
    # the int8 recipe is chosen on dev; the test file only measures the one chosen
    assert report["checked_on"] == tiny_config["data"]["test"]
    assert report["chosen_on"] == tiny_config["data"]["dev"]
    assert report["chosen_with"]["examples"] == len(
        Predictor(run, "torch").read_labelled(Path(tiny_config["data"]["dev"])))

    test_file = Path(tiny_config["data"]["test"])
    torch_run, onnx_run = Predictor(run, "torch"), Predictor(run, "onnx-fp32")
    examples = torch_run.read_labelled(test_file)
    np.testing.assert_allclose(
        onnx_run.task.logits_for_examples(onnx_run.model, onnx_run.tokenizer, examples),
        torch_run.task.logits_for_examples(torch_run.model, torch_run.tokenizer, examples),
        atol=1e-4)
    assert tunelab.load(run).backend == "model.int8.onnx"
    assert tunelab.load(run, "torch").backend == "torch"
    texts = ["the movie was great", "awful plot"]
    assert [p["label"] for p in tunelab.load(run).predict(texts)] == \
        [p["label"] for p in torch_run.predict(texts)]
    for path in export.iterdir():  # a run exported before exporters had their own folder
        path.rename(run / "export" / path.name)
    assert tunelab.load(run).backend == "model.int8.onnx"


def test_lora_is_merged_before_export(tiny_config: dict[str, Any]) -> None:
    data = {k: v for k, v in tiny_config["data"].items() if k != "dev"}  # dev split from train
    run = trained(tiny_config, data=data,
                  method={"name": "lora", "r": 4, "target_modules": "all-linear"})
    report = tunelab.api.export(run, quantize=False)
    assert not (run / "export/onnx/model.int8.onnx").exists()
    assert report["chosen_on"].endswith(f"of {data['train']} (stratified, seed 7)")
    assert report["agreement"]["onnx fp32"] == 1.0
    assert report["metrics"]["onnx fp32"] == pytest.approx(report["metrics"]["torch fp32"])


def test_ner_export_tags_like_pytorch(tiny_config: dict[str, Any], tmp_path: Path) -> None:
    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    run = trained(tiny_config, task={"type": "token-classification"},
                  data={**files, "max_length": 16})
    report = tunelab.api.export(run)
    assert report["metric"] == "f1"
    assert report["agreement"]["onnx fp32"] == 1.0
    sentence = "Anna visited great Paris ."
    got, expected = (Predictor(run, b).predict(sentence)["entities"] for b in ("onnx", "torch"))
    assert [{**e, "score": 0} for e in got] == [{**e, "score": 0} for e in expected]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=0.02)


def test_failed_check_refuses_and_writes_nothing(tiny_config: dict[str, Any]) -> None:
    run = trained(tiny_config)
    with pytest.raises(ExportError, match=r"export refused, .*drops .* pt.*nothing was written"):
        tunelab.api.export(run, max_drop_points=-5.0)  # demands a 5-point gain: must fail
    assert not (run / "export").exists()
    assert not list(run.glob(".export*"))


def test_the_gate_refuses_on_agreement_as_well_as_on_the_metric() -> None:
    from tunelab.export.base import ExportOptions
    from tunelab.export.check import Comparison
    from tunelab.export.onnx import failures as _failures

    comparison = Comparison("accuracy", metrics={"torch fp32": 0.9, "onnx int8": 0.9},
                            agreement={"onnx int8": 0.95})
    [failure] = _failures(comparison, ExportOptions(min_agreement=0.99, max_drop_points=1.0))
    assert "agrees with PyTorch on 95.00%" in failure
    assert _failures(comparison, ExportOptions(min_agreement=0.95, max_drop_points=1.0)) == []


def test_export_cli_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "export", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a tunelab run" in result.stderr


def test_export_prints_its_table_and_no_library_warnings(tiny_config: dict[str, Any]) -> None:
    """Tracing and quantisation warn about things a user cannot act on; the export shows
    its own check only, and says which int8 weights it kept."""
    import subprocess
    import sys

    run = trained(tiny_config)
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "export", str(run)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "agreement with PyTorch" in result.stdout and "written to" in result.stdout
    assert "Warning" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    report = json.loads((run / "export/onnx/report.json").read_text())
    assert report["int8_recipe"] in ("dynamic", "dynamic-7bit", "weight-only")
    assert report["int8_weights"] in result.stdout


def test_weight_only_int8_keeps_activations_exact_enough(tiny_config: dict[str, Any]) -> None:
    """The weight-only recipe: MatMulNBits for the linear layers, int8 embeddings, served
    by the same backend and agreeing with PyTorch."""
    import onnx

    run = trained(tiny_config)
    report = tunelab.api.export(run, int8="weight-only")
    assert report["int8_recipe"] == "weight-only"
    assert report["agreement"]["onnx int8"] >= 0.99
    graph = onnx.load(str(run / "export/onnx/model.int8.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"MatMulNBits", "QEmbedLayerNormalization"} <= ops, ops
    fp32_encoder = [n.name for n in graph.node if n.op_type == "MatMul" and "encoder" in n.name]
    assert fp32_encoder == []  # the encoder's linear layers outside its attention are int8
    assert tunelab.load(run).backend == "model.int8.onnx"
