"""`pip install 'tunelab[serve]'` into a fresh virtual environment: no torch and no
training libraries, yet it predicts with and serves an exported run; a training command
there says which extra it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, first_answer, free_port
from test_export import trained

import tunelab
from tunelab.config import parse_config
from tunelab.predictor import Predictor

TEXTS = ["the movie was great", "awful plot, dull acting"]
TRAINING_SIDE = ("torch", "transformers", "peft", "accelerate", "datasets", "sklearn", "captum",
                 "matplotlib")


def serve_install(tmp_path: Path) -> Path:
    """A fresh venv with tunelab[serve] installed from a copy of the source tree (building
    in the checkout would leave build/ and egg-info behind)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"),
         f"{source}[serve]"], capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def test_serve_extra_serves_an_exported_run_without_torch(tiny_config: dict[str, Any],
                                                          tmp_path: Path) -> None:
    run = trained(tiny_config)
    tunelab.api.export(run, min_agreement=0.0, max_drop_points=100.0)
    venv = serve_install(tmp_path)
    python, cli = str(venv / "bin/python"), str(venv / "bin/tunelab")
    found = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in "
         f"{TRAINING_SIDE!r} if u.find_spec(m)])"], capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr

    expected = [p["label"] for p in Predictor(run, "onnx").predict(TEXTS)]
    predicted = subprocess.run([cli, "predict", str(run), TEXTS[0]], capture_output=True,
                               text=True, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert f'"label": "{expected[0]}"' in predicted.stdout
    assert predicted.stderr == ""
    # an exported zero-shot run takes other labels per request there too
    from test_few_labels import zero_shot_config

    zero = tunelab.train(parse_config(zero_shot_config(tmp_path))).run_dir
    tunelab.api.export(zero, min_agreement=0.0, max_drop_points=100.0)
    relabelled = subprocess.run([cli, "predict", str(zero), "my phone battery died",
                                 "--labels", "weather,phones"], capture_output=True,
                                text=True, cwd=tmp_path)
    assert relabelled.returncode == 0, relabelled.stderr[-2000:]
    assert '"label": "phones"' in relabelled.stdout

    port, log = free_port(), tmp_path / "serve.err"
    with log.open("w") as err:
        server = subprocess.Popen(
            [cli, "serve", str(run), "--port", str(port), "--no-auth"], cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "TUNELAB_DB_URL": f"sqlite:///{tmp_path / 'store.db'}"})
    try:
        answer = first_answer(server, log, f"http://127.0.0.1:{port}/v1/predict",
                              {"texts": TEXTS})
        assert answer.status_code == 200
        assert [p["label"] for p in answer.json()["predictions"]] == expected
    finally:
        server.terminate()
        server.wait(timeout=30)

    (tmp_path / "config.yaml").write_text(Path(run / "config.yaml").read_text())
    training = subprocess.run([cli, "train", "config.yaml"], capture_output=True, text=True,
                              cwd=tmp_path)
    assert training.returncode == 2
    assert training.stderr.strip().count("\n") == 0
    assert "pip install 'tunelab[train]'" in training.stderr
