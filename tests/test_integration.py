"""The packaged MiniLM fine-tuned on a few hundred real SST-2 examples.

Thresholds sit well above chance (0.5) and below what these runs reach (about 0.8), so
they are stable from run to run yet fail if training breaks.
"""

import csv
from pathlib import Path

import pytest
from conftest import DATASETS

import tunelab
from tunelab.config import parse_config

SST2 = DATASETS / "sst2"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SST2.is_dir(), reason=f"{SST2} is not here"),
]


def sst2_slice(source: Path, target: Path, n: int, skip: int = 0) -> Path:
    """The first n rows after `skip`, phrases of at least 4 words (short ones are ambiguous)."""
    with source.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
                if len(row["sentence"].split()) >= 4]
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence", "label"])
        writer.writerows([row["sentence"], row["label"]] for row in rows[skip:skip + n])
    return target


@pytest.fixture(scope="module")
def sst2_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sst2")
    return {
        "train": str(sst2_slice(SST2 / "train.tsv", folder / "train.tsv", 480)),
        "dev": str(sst2_slice(SST2 / "dev.tsv", folder / "dev.tsv", 160)),
        "test": str(sst2_slice(SST2 / "test.tsv", folder / "test.tsv", 240)),
        "text_column": "sentence",
    }


def minilm_config(tmp_path: Path, data: dict[str, str], **extra: object):
    return parse_config({
        "name": "sst2", "output_dir": str(tmp_path), "seed": 13, "model": {"name": "minilm-l6"},
        "data": {**data, "max_length": 64},
        "training": {"epochs": 3, "batch_size": 16, "logging_steps": 10},
        "evaluation": {"probe_max_examples": 480}, **extra,
    })


def test_the_defaults_alone_beat_both_baselines(tmp_path: Path,
                                                sst2_files: dict[str, str]) -> None:
    """Nothing set but the data: the steps, learning rate and head are tunelab's defaults."""
    result = tunelab.train(parse_config({"name": "sst2-defaults", "output_dir": str(tmp_path),
                                         "data": {**sst2_files, "max_length": 64}}))
    test, baselines = result.metrics["test"], result.metrics["baselines"]
    assert result.metrics["shipped"] == "fine-tuned" and not result.metrics["warnings"]
    assert test["accuracy"] > 0.72
    assert test["accuracy"] > baselines["probe"]["accuracy"] + 0.03
    assert test["accuracy"] > baselines["majority"]["accuracy"] + 0.15
    prediction = tunelab.load(result.run_dir).predict(
        "a moving , beautifully acted film that stays with you")
    assert prediction["label"] == "1"


def test_lora_beats_chance(tmp_path: Path, sst2_files: dict[str, str]) -> None:
    result = tunelab.train(minilm_config(tmp_path, sst2_files, method={
        "name": "lora", "r": 8, "target_modules": "all-linear"}, training={
        "epochs": 4, "batch_size": 16}))
    assert result.metrics["test"]["accuracy"] > 0.70


CONLL = DATASETS / "conll2003"


def conll_slice(source: Path, target: Path, n: int) -> Path:
    sentences, current = [], []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            if current:
                sentences.append("\n".join(current))
                current = []
            if len(sentences) == n:
                break
        else:
            current.append(line)
    target.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    return target


@pytest.mark.skipif(not CONLL.is_dir(), reason=f"{CONLL} is not here")
def test_ner_on_conll_finds_entities(tmp_path: Path) -> None:
    data = {"train": str(conll_slice(CONLL / "train.txt", tmp_path / "train.txt", 400)),
            "dev": str(conll_slice(CONLL / "valid.txt", tmp_path / "valid.txt", 120)),
            "test": str(conll_slice(CONLL / "test.txt", tmp_path / "test.txt", 150)),
            "max_length": 64}
    result = tunelab.train(parse_config({
        "name": "conll", "output_dir": str(tmp_path), "seed": 13,
        "task": {"type": "token-classification"}, "data": data,
        "training": {"epochs": 4, "batch_size": 16, "lr": 2e-4},
        "evaluation": {"probe_max_examples": 200},
    }))
    assert result.metrics["test"]["f1"] > 0.35
    assert result.metrics["test"]["f1"] > result.metrics["baselines"]["majority"]["f1"] + 0.3
    text = "John Smith flew to London on Monday ."
    entities = tunelab.load(result.run_dir).predict(text)["entities"]
    assert entities and all(text[e["start"]:e["end"]] == e["text"] for e in entities)
