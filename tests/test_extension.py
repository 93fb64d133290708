"""A task and a method from outside the package, added through the entry points alone
(tests/plugin/toy_plugin.py), train, predict, export and serve like the built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import free_port, write_csv

PLUGIN = Path(__file__).parent / "plugin"
ENTRY_POINTS = """[tunelab.tasks]
text-score = toy_plugin:TextScore

[tunelab.methods]
bitfit = toy_plugin:BitFit
least-squares-head = toy_plugin:LeastSquaresHead
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An installed distribution as importlib.metadata sees one: a dist-info folder with
    the entry points, next to the module, on PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "toy_plugin.py").write_text((PLUGIN / "toy_plugin.py").read_text())
    return {**os.environ, "PYTHONPATH": str(site), "TOKENIZERS_PARALLELISM": "false"}


def tunelab(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def scored_rows(n: int, seed: int) -> list[tuple[str, float]]:
    from conftest import sentiment_rows

    return [(text, 1.0 if label == "positive" else 0.0)
            for text, label in sentiment_rows(n, seed)]


def test_a_plugin_task_and_method_train_predict_export_and_serve(
        tmp_path: Path, tiny_model_dir: Path, plugin_env: dict[str, str]) -> None:
    files = {split: write_csv(tmp_path / f"{split}.csv", scored_rows(n, seed),
                              header=("text", "score"))
             for split, n, seed in (("train", 96, 1), ("dev", 24, 2), ("test", 24, 3))}
    config: dict[str, Any] = {
        "name": "scores", "output_dir": str(tmp_path / "runs"), "seed": 3, "threads": 1,
        "model": {"name": str(tiny_model_dir)},
        "task": {"type": "text-score", "tolerance": 0.3},
        "method": {"name": "bitfit"},
        "data": {**{k: str(v) for k, v in files.items()}, "label_column": "score",
                 "max_length": 32},
        "training": {"epochs": 3, "batch_size": 8, "logging_steps": 4},
        "evaluation": {"baselines": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    tunelab(plugin_env, "train", "config.yaml", cwd=tmp_path)
    run = tmp_path / "runs" / "scores"
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "text-score" and record["method"] == "bitfit"
    assert record["test"]["neg_mse"] <= 0 and "within_tolerance" in record["test"]
    steps = json.loads((run / "model" / "bitfit.json").read_text())
    assert steps["optimizer_steps"] == steps["planned_steps"] == 3 * 12  # 96 / 8, 3 epochs
    trained = record["train"]
    assert trained["trainable_parameters"] < trained["total_parameters"] / 2  # biases only

    # the run loads with plain transformers: a saved model is an ordinary one
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(run / "model").num_labels == 1

    predicted = tunelab(plugin_env, "predict", str(run), "the movie was great",
                        "--option", "digits=2", cwd=tmp_path)
    [row] = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert row["text"] == "the movie was great" and row["value"] == round(row["value"], 2)

    tunelab(plugin_env, "export", str(run), "--min-agreement", "0.9", "--max-drop", "5",
            cwd=tmp_path)
    assert (run / "export" / "onnx" / "model.int8.onnx").is_file()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "serve", str(run),
                               "--no-auth", "--port", str(port)], env=plugin_env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.5)
        answer = httpx.post(f"{base}/v1/predict", json={"texts": ["awful plot", "great"],
                                                        "digits": 1}, timeout=30)
        assert answer.status_code == 200, answer.text
        values = [p["value"] for p in answer.json()["predictions"]]
        assert len(values) == 2 and all(v == round(v, 1) for v in values)
        assert httpx.post(f"{base}/v1/predict", json={"texts": ["x"], "digits": 9},
                          timeout=30).status_code == 422  # the task's Request bounds hold
        info = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert info["task"] == "text-score" and info["request_options"] == ["digits"]
        assert info["backend"] == "model.int8.onnx"
        schema = httpx.get(f"{base}/openapi.json", timeout=10).json()["components"]["schemas"]
        assert "ScorePrediction" in schema and "digits" in schema["PredictRequest"]["properties"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_plugin_method_with_its_own_loop_trains_without_the_trainer(
        tmp_path: Path, tiny_model_dir: Path, plugin_env: dict[str, str]) -> None:
    files = {split: write_csv(tmp_path / f"{split}.csv", scored_rows(n, seed),
                              header=("text", "score"))
             for split, n, seed in (("train", 96, 1), ("dev", 24, 2), ("test", 24, 3))}
    config = {"name": "solved", "output_dir": str(tmp_path / "runs"), "threads": 1,
              "model": {"name": str(tiny_model_dir)}, "task": "text-score",
              "method": "least-squares-head",
              "data": {**{k: str(v) for k, v in files.items()}, "label_column": "score"},
              "evaluation": {"baselines": False}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    tunelab(plugin_env, "train", "config.yaml", cwd=tmp_path)
    run = tmp_path / "runs" / "solved"
    record = json.loads((run / "metrics.json").read_text())
    assert record["train"]["steps"] == 0 and not (run / "checkpoints").exists()
    history = json.loads((run / "log_history.json").read_text())
    assert history == [{"epoch": 1.0, "step": 0, "fitted_examples": 96}]
    # the closed-form head beats predicting the training mean (MSE 0.25 on 0/1 scores)
    assert record["test"]["neg_mse"] > -0.25
