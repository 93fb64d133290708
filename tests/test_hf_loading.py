"""A saved run loads without tunelab: the code in its model card's "Without tunelab" section
runs as written (plain transformers, or peft on the base model) and gives the labels and
probabilities `tunelab predict` gives. Six kinds of run: full, head and LoRA classifiers, a
multi-label classifier, and full and LoRA taggers."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_csv
from test_token_classification import conll_file

import tunelab
from tunelab.config import parse_config
from tunelab.predictor import Predictor

TEXTS = ["great acting and a fine plot", "an awful , sad film", "the plot was okay"]
WORDS = [["Anna", "visited", "great", "Paris", "."], ["Bob", "loves", "bad"]]
KINDS = {"full": ("full", "text"), "head": ("head", "text"), "lora": ("lora", "text"),
         "multi-label": ("full", "multi"), "ner-full": ("full", "ner"),
         "ner-lora": ("lora", "ner")}


def train_kind(config: dict[str, Any], tmp_path: Path, method: str, data: str) -> Path:
    raw: dict[str, Any] = {**config, "name": f"hf-{method}-{data}", "method": method,
                           "evaluation": {"baselines": False}}
    raw["training"] = {**config["training"], "epochs": 2}
    if data == "multi":
        rows = [("great good movie", "pos|praise"), ("awful bad plot", "neg"),
                ("terrible sad film", "neg|sad")] * 12
        files = {s: str(write_csv(tmp_path / f"{s}.csv", rows)) for s in ("train", "dev", "test")}
        raw |= {"task": {"multi_label": True}, "data": {**config["data"], **files}}
    elif data == "ner":
        files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
        # long enough that no test sentence is cut (the pipeline does not truncate)
        raw |= {"task": "token-classification", "data": {**files, "max_length": 48}}
    return tunelab.train(parse_config(raw), overwrite=True).run_dir


def card_code(run: Path) -> str:
    card = (run / "model" / "README.md").read_text()
    assert card == (run / "README.md").read_text()
    section = card.split("### Without tunelab", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, section[:300]
    return found.group(1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_run_loads_with_plain_transformers_as_its_card_says(
        tiny_config: dict[str, Any], tmp_path: Path, kind: str) -> None:
    method, data = KINDS[kind]
    run = train_kind(tiny_config, tmp_path, method, data)
    code = card_code(run)
    assert "import tunelab" not in code
    scope: dict[str, Any] = {}
    exec(code, scope)  # the card's own code, as a user would paste it
    pipe = scope["model"]
    ours = Predictor(run, "torch")
    if data == "ner":
        for words in WORDS:
            theirs = [(e["entity_group"], e["word"]) for e in pipe(" ".join(words))]
            mine = [(e["type"], e["text"].lower()) for e in ours.predict([words])[0]["entities"]]
            assert theirs == mine
        return
    for text, mine in zip(TEXTS, ours.predict(TEXTS), strict=True):
        theirs = {row["label"]: row["score"] for row in pipe([text])[0]}
        assert theirs == pytest.approx(mine["probabilities"], abs=1e-4)
        if data == "text":
            assert max(theirs, key=theirs.get) == mine["label"]


def test_an_adapter_names_its_base_by_hub_id_and_holds_no_local_path(tmp_path: Path) -> None:
    config = parse_config({
        "name": "portable", "output_dir": str(tmp_path / "runs"), "model": {"name": "minilm-l6"},
        "data": {"train": str(write_csv(tmp_path / "t.csv", [("good", "a"), ("bad", "b")] * 8)),
                 "max_length": 16},
        # two steps cannot beat the probe: keep the adapter, the artefact under test
        "method": "lora", "training": {"max_steps": 2, "batch_size": 8,
                                       "fallback_to_probe": False},
        "evaluation": {"baselines": False}})
    run = tunelab.train(config).run_dir / "model"
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    labels = json.loads((run / "config.json").read_text())["id2label"]
    assert sorted(labels.values()) == ["a", "b"]
    for path in run.iterdir():
        if path.suffix in (".json", ".md"):
            assert sys.prefix not in path.read_text(), f"{path.name} holds a local path"
