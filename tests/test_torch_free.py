"""An exported model predicts, explains and serves without torch: onnxruntime, tokenizers and
numpy, never torch, transformers, or the training-side libraries (datasets, scikit-learn,
peft, captum), also with personal data masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from conftest import ROOT, first_answer, free_port
from test_token_classification import conll_file

import tunelab
from tunelab.config import parse_config
from tunelab.predictor import Predictor

TRAINING_SIDE = ("torch", "transformers", "datasets", "sklearn", "peft", "captum",
                 "accelerate")
TEXTS = ["the movie was great", "awful plot, dull acting"]
SENTENCE = "Anna visited great Paris ."


def heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in TRAINING_SIDE)


def imported(stderr: str) -> list[str]:
    """The modules `python -X importtime` reported loading."""
    return [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")]


def exported_runs(config: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    runs = {"text": tunelab.train(parse_config(config), overwrite=True).run_dir,
            "ner": tunelab.train(parse_config({
                **config, "name": "tiny-ner", "task": {"type": "token-classification"},
                "data": {**files, "max_length": 16}}), overwrite=True).run_dir}
    for run in runs.values():
        tunelab.api.export(run, min_agreement=0.0, max_drop_points=100.0)
    return runs


def test_an_exported_model_predicts_and_explains_without_torch(
        tiny_config: dict[str, Any], tmp_path: Path) -> None:
    runs = exported_runs(tiny_config, tmp_path)
    script = (
        "import json, sys\n"
        "from tunelab.predictor import Predictor\n"
        "from tunelab.explain.explainer import explain\n"
        "text, ner = Predictor(sys.argv[1], 'onnx'), Predictor(sys.argv[2], 'onnx')\n"
        f"out = {{'text': text.predict({TEXTS!r}), 'ner': ner.predict({SENTENCE!r}),\n"
        f"       'why': explain(text, {TEXTS[0]!r})['method'],\n"
        f"       'why_ner': len(explain(ner, {SENTENCE!r})['entities'])}}\n"
        "print(json.dumps({'out': out, 'modules': sorted(sys.modules)}))\n")
    result = subprocess.run([sys.executable, "-c", script, str(runs["text"]), str(runs["ner"])],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert heavy(answer["modules"]) == []
    assert "onnxruntime" in answer["modules"]
    out = answer["out"]
    torch_text, torch_ner = Predictor(runs["text"], "torch"), Predictor(runs["ner"], "torch")
    assert [p["label"] for p in out["text"]] == [p["label"] for p in torch_text.predict(TEXTS)]
    assert [(e["type"], e["start"], e["end"]) for e in out["ner"]["entities"]] == [
        (e["type"], e["start"], e["end"]) for e in torch_ner.predict(SENTENCE)["entities"]]
    assert out["why"] == "occlusion"
    assert out["why_ner"] == len(out["ner"]["entities"])


def test_predict_explain_and_serve_commands_import_no_torch(tiny_config: dict[str, Any],
                                                    tmp_path: Path) -> None:
    runs = exported_runs(tiny_config, tmp_path)
    predicted = subprocess.run([sys.executable, "-X", "importtime", "-m", "tunelab.cli",
                                "predict", str(runs["text"]), *TEXTS],
                               capture_output=True, text=True, cwd=ROOT)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(predicted.stdout.splitlines()) == len(TEXTS)
    assert heavy(imported(predicted.stderr)) == []
    explained = subprocess.run([sys.executable, "-X", "importtime", "-m", "tunelab.cli",
                                "explain", str(runs["text"]), TEXTS[0]],
                               capture_output=True, text=True, cwd=ROOT)
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert json.loads(explained.stdout)["method"] == "occlusion"
    assert heavy(imported(explained.stderr)) == []

    port, log = free_port(), tmp_path / "serve.err"
    with log.open("w") as err:
        server = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "tunelab.cli", "serve", str(runs["text"]),
             "--port", str(port), "--no-auth", "--log-texts"],  # masking loads at start
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "TUNELAB_DB_URL": f"sqlite:///{tmp_path / 'store.db'}"})
    url = f"http://127.0.0.1:{port}"
    try:
        answer = first_answer(server, log, f"{url}/v1/predict", {"texts": TEXTS})
        assert answer.status_code == 200
        assert len(answer.json()["predictions"]) == len(TEXTS)
        explained = httpx.post(f"{url}/v1/explain", json={"text": TEXTS[0]}, timeout=30)
        assert explained.status_code == 200
        assert explained.json()["explanation"]["method"] == "occlusion"
        # masking keeps torch and transformers out by making them unimportable while
        # presidio imports, which -X importtime lists as (failed) imports: look at what is
        # loaded instead
        loaded = Path(f"/proc/{server.pid}/maps").read_text()
        assert "/torch/" not in loaded and "/sklearn/" not in loaded
    finally:
        server.terminate()
        server.wait(timeout=30)
    modules = imported(log.read_text())
    assert "presidio_analyzer" in modules
    # torch and transformers are each listed once, as the failed imports presidio tried;
    # a real import of either would list its submodules too
    assert heavy([m for m in modules if m not in ("torch", "transformers")]) == []
