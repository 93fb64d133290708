"""An exported model's tokenizer (tokenizers alone) encodes and pads exactly as transformers'
own tokenizer of the same folder: texts, pairs, truncation, words, windows and offsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import (
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
)

from tunelab.json_tokenizer import JsonTokenizer
from tunelab.models import resolve_model

TEXTS = ["The movie was GREAT!", "naïve café, résumé", "北京欢迎你 and 東京", "emoji 🙂 ok",
         "zero\u200bwidth", "a " * 80 + "long one", "x"]
PAIRS = ["what is it?", "a" * 300, "short", "", "b c", "second text", "y z"]
SENTENCES = [["EU", "rejects", "German", "call", "\u200b", "to", "boycott", "British",
              "lamb", "."] * 4, ["Peter", "Blackburn"], ["naïve", "café"]]


@pytest.fixture(params=["minilm", "tiny"])
def folder(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Path:
    if request.param == "tiny":
        return tiny_model_dir
    return Path(resolve_model("minilm-l6").source)


def as_lists(encoded: dict) -> dict:
    return {key: [list(map(tuple, row)) if key == "offset_mapping" else list(row)
                  for row in values] if isinstance(values[0], list) else list(values)
            for key, values in encoded.items()}


def test_texts_and_pairs_encode_as_transformers_does(folder: Path) -> None:
    ours, theirs = JsonTokenizer(folder), AutoTokenizer.from_pretrained(folder)
    for kwargs in ({}, {"truncation": True, "max_length": 16}):
        assert as_lists(ours(TEXTS, **kwargs)) == as_lists(theirs(TEXTS, **kwargs))
        assert as_lists(ours(TEXTS, PAIRS, **kwargs)) == \
            as_lists(theirs(TEXTS, PAIRS, **kwargs))
    assert dict(ours(TEXTS[0])) == dict(theirs(TEXTS[0]))
    for word in ("GREAT", "\u200b", "café", "lamb."):
        assert ours.tokenize(word) == theirs.tokenize(word)
    assert (ours.pad_token_id, ours.unk_token, ours.unk_token_id) == \
        (theirs.pad_token_id, theirs.unk_token, theirs.unk_token_id)
    assert dict(ours(TEXTS, add_special_tokens=False)) == \
        dict(theirs(TEXTS, add_special_tokens=False))


def test_words_in_overflowing_windows_match_transformers(folder: Path) -> None:
    ours, theirs = JsonTokenizer(folder), AutoTokenizer.from_pretrained(folder)
    kwargs = {"is_split_into_words": True, "truncation": True, "max_length": 12, "stride": 3,
              "return_overflowing_tokens": True, "return_offsets_mapping": True}
    mine, reference = ours(SENTENCES, **kwargs), theirs(SENTENCES, **kwargs)
    assert len(mine["input_ids"]) > len(SENTENCES), "the long sentence spans windows"
    assert as_lists(mine) == as_lists(reference)
    for window in range(len(mine["input_ids"])):
        assert mine.word_ids(window) == reference.word_ids(window)


def test_padding_matches_the_collators(folder: Path) -> None:
    ours, theirs = JsonTokenizer(folder), AutoTokenizer.from_pretrained(folder)
    encoded = ours(TEXTS, PAIRS, truncation=True, max_length=24)
    features = [{key: encoded[key][i] for key in encoded} for i in range(len(TEXTS))]
    padded = ours.pad(features)
    expected = DataCollatorWithPadding(theirs, return_tensors="np")(features)
    assert set(padded) == set(expected)
    for key in padded:
        np.testing.assert_array_equal(padded[key], expected[key])
    # a plugin task's own transformers collator pads with it as well
    through = DataCollatorWithPadding(ours, return_tensors="np", pad_to_multiple_of=8)(features)
    reference = DataCollatorWithPadding(theirs, return_tensors="np", pad_to_multiple_of=8)(
        features)
    for key in reference:
        np.testing.assert_array_equal(through[key], reference[key])
    tagged = [{**feature, "labels": [1] * len(feature["input_ids"])} for feature in features]
    expected = DataCollatorForTokenClassification(theirs, return_tensors="np")(tagged)
    np.testing.assert_array_equal(ours.pad(tagged)["labels"], expected["labels"])
