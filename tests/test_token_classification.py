"""NER: readers, subword alignment, windows, offsets and end-to-end runs on the tiny BERT."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

import tunelab
from tunelab.config import parse_config
from tunelab.data.readers import ReaderOptions, read_table
from tunelab.errors import DataError
from tunelab.models import resolve_model
from tunelab.tasks.alignment import IGNORE, encode_windows, word_outputs, words_with_offsets
from tunelab.tasks.token_classification import TokenClassification

CONLL = """-DOCSTART- -X- -X- O

Anna NNP B-NP B-PER
visited VBD B-VP O
great JJ B-NP B-LOC
Paris NNP I-NP I-LOC
. . O O

-DOCSTART- -X- -X- O

Bob NNP B-NP B-PER
loves VBZ B-VP O
bad JJ B-NP B-ORG
"""


def conll_file(path: Path, sentences: int = 1) -> Path:
    path.write_text(CONLL * sentences)
    return path


def read_examples(path: Path, **data: Any):
    config = parse_config({"data": {"train": str(path), **data},
                           "task": {"type": "token-classification"}})
    options = ReaderOptions(tag_column=config.data.tag_column)
    examples = TokenClassification.examples_from_table(
        read_table(path, config.data.format, options), config)
    return TokenClassification.from_config(config, examples), examples


# --- readers -----------------------------------------------------------------
def test_conll_reader_skips_docstart_and_splits_on_blank_lines(tmp_path: Path) -> None:
    table = read_table(conll_file(tmp_path / "a.txt"))
    assert [row["tokens"] for row in table.rows] == [
        ["Anna", "visited", "great", "Paris", "."], ["Bob", "loves", "bad"]]
    assert table.lines == [3, 11]
    chunks = read_table(tmp_path / "a.txt", options=ReaderOptions(tag_column=2)).rows[0]["tags"]
    assert chunks == ["B-NP", "B-VP", "B-NP", "I-NP", "O"]


def test_seqio_reader_reads_the_folder(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("fly to boston\nbook a table\n")
    (tmp_path / "seq.out").write_text("O O B-city\nO O O\n")
    (tmp_path / "label").write_text("flight\nrestaurant\n")
    table = read_table(tmp_path)
    assert table.rows[0] == {"tokens": ["fly", "to", "boston"], "tags": ["O", "O", "B-city"],
                             "label": "flight"}
    (tmp_path / "seq.out").write_text("O O B-city\n")
    with pytest.raises(DataError, match=r"seq\.in has 2 lines but seq\.out has 1"):
        read_table(tmp_path)


def test_bmes_reader_and_conversion(tmp_path: Path) -> None:
    path = tmp_path / "a.char.bmes"
    path.write_text("高 勇 是 男\tB-NAME E-NAME O O\n\n中 国\tB-CONT E-CONT\n")
    _, examples = read_examples(path)
    assert examples.tokens[0] == ["高", "勇", "是", "男"]
    assert examples.tags == [["B-NAME", "I-NAME", "O", "O"], ["B-CONT", "I-CONT"]]
    assert examples.lines == [1, 3]
    path.write_text("高 勇 B-NAME E-NAME\n")
    with pytest.raises(DataError, match=r"a\.char\.bmes:1: no TAB"):
        read_table(path)


def test_jsonl_with_tokens_or_character_spans(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"tokens": ["Anna", "sings"], "tags": ["S-PER", "O"]}\n'
        '{"text": "Bob moved to New York.", "spans": [{"start": 0, "end": 3, "label": "PER"},'
        ' [13, 21, "LOC"]]}\n')
    config = parse_config({"data": {"train": str(path), "tag_scheme": "iobes"},
                           "task": {"type": "token-classification"}})
    examples = TokenClassification.examples_from_table(read_table(path), config)
    assert examples.tags[0] == ["B-PER", "O"]
    assert examples.tokens[1] == ["Bob", "moved", "to", "New", "York", "."]
    assert examples.tags[1] == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]


def test_token_and_tag_counts_must_match(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(DataError, match=r"a\.jsonl:2: sentence 2 has 2 tokens but 1 tags"):
        read_examples(path)


def test_tag_outside_the_scheme_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"tokens": ["a", "b"], "tags": ["B-X", "E-X"]}\n')
    with pytest.raises(DataError, match=r"a\.jsonl:1: tag 'E-X' is not valid in the iob2"):
        read_examples(path, tag_scheme="iob2")


def test_an_i_tag_that_opens_an_entity_in_declared_iob2_is_counted_aloud(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"tokens": ["Anna", "went"], "tags": ["B-PER", "O"]}\n'
                    '{"tokens": ["so", "Bo", "ran"], "tags": ["O", "I-PER", "O"]}\n'
                    '{"tokens": ["Al"], "tags": ["I-PER"]}\n')
    with caplog.at_level("WARNING", logger="tunelab"):
        _, examples = read_examples(path, tag_scheme="iob2")
    assert examples.tags[1] == ["O", "B-PER", "O"]
    assert "2 sentence(s) have an I- tag that starts an entity" in caplog.text
    assert "a.jsonl:2" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tunelab"):
        read_examples(path, tag_scheme="iob1")  # IOB1 allows it: nothing to say
    assert "I- tag" not in caplog.text


def test_unseen_entity_type_in_dev_is_named(tmp_path: Path) -> None:
    task, _ = read_examples(conll_file(tmp_path / "train.txt"))
    dev = tmp_path / "dev.txt"
    dev.write_text("Rome NNP B-NP B-CITY\n")
    _, dev_examples = read_examples(dev)
    with pytest.raises(DataError, match=r"dev\.txt:1: entity type 'CITY' does not occur"):
        task.check_labels(dev_examples, "train.txt")


# --- alignment -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_first_subword_gets_the_label_and_windows_cover_every_word(tokenizer) -> None:
    words = ["great", "xyzzyplugh", ",", "movie", "!", *["the", "plot"] * 20, "qwerty", "."]
    labels = list(range(len(words)))
    windows = encode_windows(tokenizer, [words], max_length=12, labels=[labels])
    assert len(windows.features) > 3  # the sentence needed several windows
    labelled = set()
    for feature, word_ids, starts in zip(windows.features, windows.word_ids, windows.starts,
                                         strict=True):
        assert len(feature["input_ids"]) <= 12
        for label, word, first in zip(feature["labels"], word_ids, starts, strict=True):
            if first:
                assert label == labels[word]
                labelled.add(word)
            else:
                assert label == IGNORE
    assert labelled == set(range(len(words)))
    pieces = tokenizer.tokenize("xyzzyplugh")
    assert len(pieces) > 3  # the rare word really split into many subwords


def test_word_outputs_read_each_words_first_subword(tokenizer) -> None:
    words = ["xyzzyplugh", "great", "?", *["movie"] * 30, "qwerty", "\u200b", "bad"]
    one_hot = lambda batch: torch.nn.functional.one_hot(  # noqa: E731
        batch["input_ids"], len(tokenizer)).float()
    vectors = word_outputs(one_hot, tokenizer, [words], max_length=10, batch_size=3)[0]
    assert vectors.shape[0] == len(words)
    for word, vector in zip(words, vectors, strict=True):
        pieces = tokenizer.tokenize(word) or [tokenizer.unk_token]
        assert tokenizer.convert_ids_to_tokens(int(vector.argmax())) == pieces[0]


def test_a_word_whose_first_character_the_normaliser_drops_keeps_its_label(tokenizer) -> None:
    # the uncased normaliser strips the leading combining accent, so the word's first
    # subword starts at offset 1, not 0
    words = ["\u0301great", "movie", "\u0301bad"]
    assert tokenizer(words, is_split_into_words=True, return_offsets_mapping=True)[
        "offset_mapping"][1][0] == 1
    windows = encode_windows(tokenizer, [words], max_length=16, labels=[[5, 6, 7]])
    assert sorted(label for label in windows.features[0]["labels"] if label != IGNORE) == \
        [5, 6, 7]
    one_hot = lambda batch: torch.nn.functional.one_hot(  # noqa: E731
        batch["input_ids"], len(tokenizer)).float()
    assert word_outputs(one_hot, tokenizer, [words], max_length=16)[0].shape[0] == 3


def test_words_with_offsets_keep_punctuation_apart() -> None:
    text = "Angela Merkel visited Paris, didn't she?"
    words, offsets = words_with_offsets(text)
    assert words == ["Angela", "Merkel", "visited", "Paris", ",", "didn't", "she", "?"]
    assert all(text[a:b] == w for w, (a, b) in zip(words, offsets, strict=True))


def tagger_that_always_says(tag: str, tiny_model_dir: Path):
    """A token classifier whose head is fixed to one tag: the offsets are then known exactly."""
    task = TokenClassification(["O", "B-PER", "I-PER"], max_length=10)
    model = task.build_model(resolve_model(str(tiny_model_dir)))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
        model.classifier.bias[task.labels.index(tag)] = 10.0
    return task, model


def test_predicted_entities_carry_character_offsets(tiny_model_dir: Path, tokenizer) -> None:
    text = "  Angela  Merkel visited Paris, and the very long road to xyzzyplugh ended."
    task, model = tagger_that_always_says("B-PER", tiny_model_dir)
    entities = task.predict(model, tokenizer, [text])[0]["entities"]
    _, offsets = words_with_offsets(text)
    assert [(e["start"], e["end"]) for e in entities] == offsets  # one entity per word
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert all(0.9 < e["score"] <= 1.0 for e in entities)

    task, model = tagger_that_always_says("I-PER", tiny_model_dir)
    [entity] = task.predict(model, tokenizer, [text])[0]["entities"]  # I after O opens one
    assert entity["text"] == text.strip() and entity["type"] == "PER"

    tokens = ["Anna", "went", "home"]
    entities = task.predict(model, tokenizer, [tokens])[0]["entities"]
    assert entities[0]["text"] == "Anna went home" and entities[0]["end"] == 14


# --- end to end ------------------------------------------------------------------
@pytest.fixture
def ner_config(tmp_path: Path, tiny_config: dict[str, Any]) -> dict[str, Any]:
    files = {split: str(conll_file(tmp_path / f"{split}.txt", 12)) for split in
             ("train", "dev", "test")}
    return {**tiny_config, "task": {"type": "token-classification"},
            "data": {**files, "max_length": 16}}


def test_ner_run_writes_entity_reports(ner_config: dict[str, Any]) -> None:
    result = tunelab.train(parse_config(ner_config), overwrite=True)
    run = result.run_dir
    for name in ("entities.png", "curves.png", "report.txt", "errors.jsonl", "predictions.jsonl",
                 "model/tunelab.json"):
        assert (run / name).is_file(), name
    metrics = result.metrics["test"]
    assert {"f1", "precision", "recall", "f1_macro", "token_accuracy", "f1_PER"} <= set(metrics)
    assert result.metrics["baselines"]["majority"]["f1"] == 0.0
    assert "Per-entity report" in result.report
    row = json.loads((run / "predictions.jsonl").read_text().splitlines()[0])
    assert row["gold"] == ["PER: Anna", "LOC: great Paris"]
    assert set(row) >= {"predicted", "correct", "line"}
    prediction = tunelab.load(run).predict("Anna visited great Paris .")
    assert isinstance(prediction["entities"], list)


def test_ner_lora_saves_the_head_and_reloads(ner_config: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    result = tunelab.train(parse_config({**ner_config, "method": {"name": "lora", "r": 4}}),
                           overwrite=True)
    weights = load_file(result.run_dir / "model/adapter_model.safetensors")
    assert any("classifier" in key for key in weights)
    evaluated, _ = tunelab.evaluate(result.run_dir, ner_config["data"]["test"])
    assert evaluated.metrics["f1"] == pytest.approx(result.metrics["test"]["f1"])


def test_head_only_for_ner(ner_config: dict[str, Any]) -> None:
    result = tunelab.train(parse_config({**ner_config, "method": "head"}), overwrite=True)
    train = result.metrics["train"]
    assert train["trainable_parameters"] < train["total_parameters"] / 10
