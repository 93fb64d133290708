"""Learning from few labels: zero-shot from label names, few-shot (SetFit), and sampling a
few examples a label from any training file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import write_csv
from test_cli import run_cli

import tunelab
from tunelab.config import parse_config
from tunelab.errors import TunelabError
from tunelab.predictor import Predictor

TOPICS = [
    ("the team won the championship final with a late goal", "sports"),
    ("the striker scored twice and the coach praised the defence", "sports"),
    ("shares fell after the bank reported lower quarterly profits", "business"),
    ("the company raised prices as its revenue and earnings grew", "business"),
    ("the new phone has a faster chip and a better camera", "technology"),
    ("engineers released software that runs the model on a laptop", "technology"),
]


def zero_shot_config(tmp_path: Path, **data: Any) -> dict[str, Any]:
    test = write_csv(tmp_path / "topics.csv", TOPICS)
    return {"name": "zero", "output_dir": str(tmp_path / "runs"), "model": {"name": "minilm-l6"},
            "task": {"type": "text-classification",
                     "labels": ["sports", "business", "technology"]},
            "method": "zero-shot", "data": {"test": str(test), **data}}


def test_zero_shot_without_training_data_writes_a_run_that_predicts_from_label_names(
        tmp_path: Path) -> None:
    result = tunelab.train(parse_config(zero_shot_config(tmp_path)))
    record = result.record
    assert record.sizes["train"] == 0 and record.train.steps == 0
    assert record.shipped == "untrained" and record.train.trainable_parameters == 0
    assert record.train.head_start == "own"
    assert record.calibration == {}  # the test file stands in for dev: nothing fitted on it
    assert "no dev file given" in record.sources["dev"]
    assert record.test["accuracy"] == 1.0  # MiniLM matches these texts to their topics
    for name in ("report.txt", "README.md", "metrics.json", "predictions.jsonl"):
        assert (result.run_dir / name).is_file()
    model = Predictor(result.run_dir, "torch")
    assert model.predict(["the goalkeeper saved a penalty"])[0]["label"] == "sports"


def test_zero_shot_model_loads_with_sentence_transformers_as_the_card_says(
        tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    run = tunelab.train(parse_config(zero_shot_config(tmp_path))).run_dir
    body = SentenceTransformer(str(run / "model"), local_files_only=True)
    head = load_file(str(run / "model" / "classifier.safetensors"))
    texts = [text for text, _ in TOPICS]
    embeddings = body.encode(texts, convert_to_tensor=True)
    plain = (embeddings @ head["weight"].T + head["bias"]).softmax(-1)
    ours = Predictor(run, "torch").predict(texts)
    labels = ["sports", "business", "technology"]
    for row, prediction in zip(plain.tolist(), ours, strict=True):
        assert row == pytest.approx([prediction["probabilities"][lab] for lab in labels],
                                    abs=1e-4)
    assert "SentenceTransformer" in (run / "model" / "README.md").read_text()


def test_zero_shot_descriptions_stand_in_for_label_codes(tmp_path: Path) -> None:
    coded = [(text, {"sports": "S", "business": "B", "technology": "T"}[label])
             for text, label in TOPICS]
    raw = zero_shot_config(tmp_path)
    raw["data"]["test"] = str(write_csv(tmp_path / "coded.csv", coded))
    raw["task"]["labels"] = ["S", "B", "T"]
    raw["method"] = {"name": "zero-shot", "descriptions": {
        "S": "sports", "B": "business and finance", "T": "technology"}}
    assert tunelab.train(parse_config(raw)).record.test["accuracy"] == 1.0


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw["task"].pop("labels"), r"task\.labels: missing; method zero-shot"),
    (lambda raw: raw.update(method="full"), r"data\.train: missing; method full learns"),
    (lambda raw: raw["data"].pop("test"), r"data\.test: missing; a run without training"),
    (lambda raw: raw.update(method={"name": "zero-shot", "templates": ["about it"]}),
     r"method\.templates: .*no \{label\} placeholder"),
    (lambda raw: raw.update(method={"name": "zero-shot", "descriptions": {"golf": "x"}}),
     r"method\.descriptions: golf are not labels of this run"),
])
def test_zero_shot_bad_configs_are_one_line_errors_before_any_run(
        tmp_path: Path, change: Any, message: str) -> None:
    raw = zero_shot_config(tmp_path)
    change(raw)
    with pytest.raises(TunelabError, match=message):
        tunelab.train(parse_config(raw))
    assert not (tmp_path / "runs" / "zero").exists()


def test_zero_shot_without_labels_exits_2_from_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = zero_shot_config(tmp_path)
    raw["task"].pop("labels")
    config = tmp_path / "zero.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["train", str(config)], capsys, monkeypatch)
    assert code == 2
    assert err.strip().count("\n") == 0 and "task.labels: missing" in err
    assert "Traceback" not in err


def test_examples_per_class_samples_a_seeded_few_of_each_label(
        tiny_config: dict[str, Any]) -> None:
    raw = {**tiny_config, "data": {**tiny_config["data"], "examples_per_class": 5},
           "evaluation": {"baselines": False}}
    record = tunelab.train(parse_config(raw), overwrite=True).record
    assert record.sizes["train"] == 10  # two labels
    assert "5 a label, seed 7" in record.sources["train"]


def test_examples_per_class_larger_than_a_class_is_refused(
        tiny_config: dict[str, Any]) -> None:
    raw = {**tiny_config, "data": {**tiny_config["data"], "examples_per_class": 500}}
    with pytest.raises(TunelabError, match=r"data\.examples_per_class: 500 is more than the "
                                           r"\d+ training examples of label"):
        tunelab.train(parse_config(raw))
    assert not (Path(tiny_config["output_dir"]) / "tiny").exists()


def test_few_shot_trains_pairs_then_a_head_and_reloads_and_exports_the_same(
        tiny_config: dict[str, Any]) -> None:
    raw = {**tiny_config, "method": {"name": "few-shot", "iterations": 2, "label_examples": 0},
           "data": {**tiny_config["data"], "examples_per_class": 8}}
    result = tunelab.train(parse_config(raw), overwrite=True)
    record = result.record
    assert record.method == "few-shot" and record.sizes["train"] == 16
    # 2 iterations: 2 positive and 2 negative pairs per example, 64 pairs in batches of 16
    assert record.train.steps == 4 and record.train.head_start == "own"
    saved = [json.loads(line) for line in
             (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    again = Predictor(result.run_dir, "torch").predict([row["text"] for row in saved])
    for row, new in zip(saved, again, strict=True):
        assert new["probabilities"] == pytest.approx(row["probabilities"], abs=1e-4)
    tunelab.api.export(result.run_dir, min_agreement=0.0, max_drop_points=100.0)
    report = json.loads((result.run_dir / "export" / "onnx" / "report.json").read_text())
    assert report["agreement"]["onnx fp32"] >= 0.99


def test_few_shot_label_sentences_join_the_examples(tiny_config: dict[str, Any]) -> None:
    method = {"name": "few-shot", "iterations": 2, "label_examples": 2,
              "descriptions": {"positive": "good"}}
    raw = {**tiny_config, "method": method,
           "data": {**tiny_config["data"], "examples_per_class": 8}}
    record = tunelab.train(parse_config(raw), overwrite=True).record
    # 16 examples and 2 copies of each label's one sentence: 80 pairs in batches of 16
    assert record.train.steps == 5
    from tunelab.methods.few_shot import FewShotOptions, named

    assert named("card_arrival", FewShotOptions()) and not named("3", FewShotOptions())
    assert named("3", FewShotOptions(descriptions={"3": "refund"}))
    raw["method"] = {**method, "descriptions": {"great": "good"}}
    with pytest.raises(TunelabError, match=r"method\.descriptions: great are not labels"):
        tunelab.train(parse_config(raw), overwrite=True)


def test_few_shot_refuses_token_classification(tmp_path: Path, tiny_config: dict[str, Any]
                                               ) -> None:
    from test_token_classification import conll_file

    data = {"train": str(conll_file(tmp_path / "train.txt", 20)),
            "dev": str(conll_file(tmp_path / "dev.txt", 8)), "max_length": 32}
    raw = {**tiny_config, "task": "token-classification", "method": "few-shot", "data": data}
    with pytest.raises(TunelabError, match=r"method: few-shot classifies single-label text"):
        tunelab.train(parse_config(raw))


def test_farthest_first_spreads_the_picks_over_the_uncertain_texts() -> None:
    from tunelab.active_learning import farthest_first

    rng = np.random.default_rng(0)
    near_a = rng.normal([1.0, 0.0, 0.0], 0.01, (10, 3))
    near_b = rng.normal([0.0, 1.0, 0.0], 0.01, (10, 3))
    features = np.vstack([near_a, near_b, [[0.0, 0.0, 1.0]]])
    margins = np.concatenate([np.arange(10) * 0.01, np.arange(10) * 0.01 + 0.005, [0.9]])
    picked = farthest_first(features, margins, 2)
    assert picked[0] == int(np.argmin(margins))  # the least sure first
    assert picked[1] >= 10 and picked[1] < 20  # then the other uncertain cluster, not a twin


def test_suggest_lists_the_least_sure_texts_to_label_next(
        tiny_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import sentiment_rows

    from tunelab.active_learning import suggest

    run = tunelab.train(parse_config(tiny_config), overwrite=True).run_dir
    pool = [text for text, _ in sentiment_rows(40, 9, ("negative", "positive", "neither"))]
    picked = suggest(run, pool + pool[:5], 6)
    assert len(picked) == 6 and len({row["text"] for row in picked}) == 6
    model = Predictor(run, "torch").predict(pool)
    margins = sorted(abs(p["probabilities"]["positive"] - p["probabilities"]["negative"])
                     for p in model)
    assert max(row["margin"] for row in picked) <= margins[4 * 6 - 1] + 1e-4
    pool_file = tmp_path / "pool.txt"
    pool_file.write_text("\n".join(pool) + "\n")
    code, out, _ = run_cli(["suggest", str(run), "--pool", str(pool_file), "--n", "5",
                            "--output", str(tmp_path / "label.csv")], capsys, monkeypatch)
    assert code == 0 and "wrote 5 texts to label" in out
    lines = (tmp_path / "label.csv").read_text().splitlines()
    assert lines[0] == "text,label,suggested,margin" and len(lines) == 6


def test_a_zero_shot_run_takes_other_labels_per_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = tunelab.train(parse_config(zero_shot_config(tmp_path))).run_dir
    model = Predictor(run, "torch")
    asked = model.predict(["the weather today is sunny and warm", "my phone battery died"],
                          labels=["weather", "phones"])
    assert [p["label"] for p in asked] == ["weather", "phones"]
    assert set(asked[0]["probabilities"]) == {"weather", "phones"}
    head = model.model.relabel(["weather", "phones"], model.tokenizer)
    assert model.model.relabel(["weather", "phones"], model.tokenizer) is head  # kept
    code, out, _ = run_cli(["predict", str(run), "it will rain all weekend", "--backend",
                            "torch", "--labels", "weather, sports"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["label"] == "weather"
    for labels, message in ((["weather", "weather"], "'weather' is listed twice"),
                            (["weather"], "at least 2 items")):
        code, _, err = run_cli(["predict", str(run), "rain", "--backend", "torch",
                                "--labels", ",".join(labels)], capsys, monkeypatch)
        assert code == 2 and message in err and err.strip().count("\n") == 0


def test_an_exported_zero_shot_run_takes_labels_per_request_without_torch(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tunelab.train(parse_config(zero_shot_config(tmp_path))).run_dir
    tunelab.api.export(run, min_agreement=0.0, max_drop_points=100.0)
    texts, labels = ["the weather today is sunny and warm", "my phone battery died"], \
        ["weather", "phones"]
    exported = Predictor(run, "onnx-fp32")
    answer = exported.predict(texts, labels=labels)
    assert [p["label"] for p in answer] == ["weather", "phones"]
    for ours, theirs in zip(answer, Predictor(run, "torch").predict(texts, labels=labels),
                            strict=True):
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-3)
    head = exported.model.relabel(labels, exported.tokenizer)
    assert exported.model.relabel(labels, exported.tokenizer) is head  # kept
    assert exported.predict(["the goalkeeper saved a penalty"])[0]["label"] == "sports"
    script = ("import sys\nfrom tunelab.predictor import Predictor\n"
              f"p = Predictor(sys.argv[1], 'onnx').predict({texts!r}, labels={labels!r})\n"
              "print([x['label'] for x in p], 'torch' in sys.modules, "
              "'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(run)], capture_output=True,
                            text=True)
    assert result.stdout.strip() == "['weather', 'phones'] False False", result.stderr


def test_labels_per_request_are_refused_by_a_trained_classifier(
        tiny_config: dict[str, Any]) -> None:
    run = tunelab.train(parse_config(tiny_config), overwrite=True).run_dir
    with pytest.raises(TunelabError, match=r"request option labels: only a zero-shot run"):
        Predictor(run, "torch").predict(["good"], labels=["a", "b"])


def test_duplicate_labels_in_the_config_are_one_line_errors(tiny_config: dict[str, Any]
                                                             ) -> None:
    raw = {**tiny_config, "task": {"type": "text-classification",
                                   "labels": ["negative", "positive", "negative"]}}
    with pytest.raises(TunelabError, match=r"task\.labels: 'negative' is listed twice"):
        parse_config(raw)


def test_prompt_lm_scores_label_words_with_the_packaged_language_model(
        tmp_path: Path) -> None:
    from tunelab.errors import ExportError

    rows = [("a gorgeous, witty and moving film", "positive"),
            ("a dull and tedious mess of a movie", "negative"),
            ("one of the best films of the year", "positive"),
            ("the worst script i have ever seen", "negative")]
    train = write_csv(tmp_path / "train.csv", rows * 2)
    test = write_csv(tmp_path / "test.csv", [("an absolute delight from start to end", "positive"),
                                             ("boring, far too long and badly acted", "negative")])
    raw = {"name": "lm", "output_dir": str(tmp_path / "runs"), "method": {
        "name": "prompt-lm", "shots": 2}, "data": {"train": str(train), "dev": str(test),
                                                   "test": str(test)},
           "training": {"fallback_to_probe": False}}
    result = tunelab.train(parse_config(raw))
    assert result.record.test["accuracy"] == 1.0 and result.record.train.steps == 0
    saved = [json.loads(line) for line in
             (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    again = Predictor(result.run_dir, "torch").predict([row["text"] for row in saved])
    for row, new in zip(saved, again, strict=True):
        assert new["probabilities"] == pytest.approx(row["probabilities"], abs=1e-4)
    with pytest.raises(ExportError, match="prompt-lm scores each label with a language model"):
        tunelab.api.export(result.run_dir)


def test_prompt_lm_scores_every_answer_as_its_own_continuation_of_the_prompt() -> None:
    """The answers run packed in one sequence after the prompt's cache; each answer's score
    must be what the language model gives that answer alone after the prompt."""
    from tunelab.methods.prompt_lm import PromptClassifier, PromptOptions, load_lm

    lm, tokenizer = load_lm("smollm2")
    labels = ["card_arrival", "exchange_rate", "refund_not_showing_up", "pin_blocked", "fee"]
    classifier = PromptClassifier(lm, tokenizer, labels, PromptOptions(calibrate=False), [])
    assert len({len(answer) for answer in classifier.answers}) > 2  # lengths differ
    text = "I still have not received my new card, when will it come?"
    prompt = tokenizer.apply_chat_template(classifier._messages(text), tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    alone = []
    with torch.no_grad():
        for answer in classifier.answers:
            logp = lm(input_ids=torch.tensor([ids + answer])).logits[0].log_softmax(-1)
            alone.append(sum(float(logp[len(ids) - 1 + j, token])
                             for j, token in enumerate(answer)))
    assert classifier._scores(text).tolist() == pytest.approx(alone, abs=1e-3)
