"""A run's `tokenizer.json` through the `tokenizers` library alone, for exported models.

It does what transformers' PreTrainedTokenizerFast does with the same file at inference
(texts and pairs, truncation, words, overflowing windows with a stride, offsets), and pads
batches into numpy arrays, so that an exported model predicts and serves without importing
transformers at all (half a second of a server's start). Training and the torch backend keep
transformers' own classes; `tests/test_json_tokenizer.py` holds the two to the same output.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100  # the label of a padded position, as transformers pads them


class Encoded(dict[str, Any]):
    """A batch's encodings by key, with `word_ids(i)` as transformers' BatchEncoding has."""

    def __init__(self, data: dict[str, Any], encodings: list[Any]) -> None:
        super().__init__(data)
        self.encodings = encodings

    def word_ids(self, index: int = 0) -> list[int | None]:
        return list(self.encodings[index].word_ids)


class JsonTokenizer:
    """The subset of a transformers tokenizer that tunelab's inference calls."""

    padding_side = "right"

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.backend.no_truncation()  # set per call, as transformers does
        self.backend.no_padding()
        # the truncation setting lives in the shared backend: a server's prediction and
        # explanation threads each set theirs and encode under this lock
        self.lock = threading.Lock()
        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) \
            if config_file.is_file() else {}
        self.model_max_length = config.get("model_max_length")
        self.pad_token = special(config.get("pad_token"))
        self.unk_token = special(config.get("unk_token"))
        self.pad_token_id = self.token_id(self.pad_token) or 0
        self.unk_token_id = self.token_id(self.unk_token)
        self.pad_token_type_id = int(config.get("pad_token_type_id", 0))

    @staticmethod
    def supports(directory: Path) -> bool:
        """Whether the folder's tokenizer can be read without transformers."""
        config = directory / "tokenizer_config.json"
        return (directory / "tokenizer.json").is_file() and (
            not config.is_file() or json.loads(config.read_text(encoding="utf-8"))
            .get("padding_side", "right") == "right")

    def __call__(self, text: str | Sequence[Any], text_pair: Sequence[str] | None = None, *,
                 truncation: bool = False, max_length: int | None = None, stride: int = 0,
                 is_split_into_words: bool = False, return_overflowing_tokens: bool = False,
                 return_offsets_mapping: bool = False, add_special_tokens: bool = True,
                 verbose: bool = True) -> Encoded:
        single = isinstance(text, str) or (is_split_into_words and text and
                                           isinstance(text[0], str))
        batch: list[Any] = [text] if single else list(text)
        if text_pair is not None:
            batch = list(zip(batch, [text_pair] if single else text_pair, strict=True))
        limit = max_length if max_length is not None else self.model_max_length
        with self.lock:
            if truncation and limit is not None:
                self.backend.enable_truncation(limit, stride=stride, strategy="longest_first")
            else:
                self.backend.no_truncation()
            encodings = self.backend.encode_batch(batch, is_pretokenized=is_split_into_words,
                                                  add_special_tokens=add_special_tokens)
        flat, sample = [], []
        for i, encoding in enumerate(encodings):
            parts = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
            flat += parts
            sample += [i] * len(parts)
        data: dict[str, Any] = {
            "input_ids": [e.ids for e in flat], "token_type_ids": [e.type_ids for e in flat],
            "attention_mask": [e.attention_mask for e in flat]}
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in flat]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample
        elif single:
            data = {key: values[0] for key, values in data.items()}
        return Encoded(data, flat)

    def token_id(self, token: str | None) -> int | None:
        return self.backend.token_to_id(token) if token is not None else None

    def tokenize(self, text: str) -> list[str]:
        with self.lock:
            self.backend.no_truncation()
            return list(self.backend.encode(text, add_special_tokens=False).tokens)

    def pad(self, features: Sequence[dict[str, Any]], padding: Any = True,
            max_length: int | None = None, pad_to_multiple_of: int | None = None,
            return_tensors: str | None = "np") -> dict[str, Any]:
        """A batch of encoded features as right-padded int64 arrays; labels that are
        sequences are padded with -100 (the ignore index), as transformers' collators do.
        It takes the arguments those collators pass, so a plugin task's own collator
        (DataCollatorWithPadding(tokenizer)) pads with it too."""
        width = max(len(f["input_ids"]) for f in features)
        if padding == "max_length" and max_length is not None:
            width = max_length
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        fill = {"input_ids": self.pad_token_id, "token_type_ids": self.pad_token_type_id,
                "attention_mask": 0, "labels": IGNORE}
        batch: dict[str, Any] = {}
        for key in features[0]:
            values = [f[key] for f in features]
            if not isinstance(values[0], (list, tuple, np.ndarray)):
                batch[key] = np.asarray(values)
                continue
            array = np.full((len(values), width), fill.get(key, 0), dtype=np.int64)
            for row, value in enumerate(values):
                array[row, :len(value)] = value
            batch[key] = array
        if return_tensors == "pt":  # a plugin's collator on a PyTorch model
            import torch

            return {key: torch.as_tensor(value) for key, value in batch.items()}
        return batch


def special(token: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def collator_for(tokenizer: Any) -> Any:
    """The numpy padding of a JsonTokenizer, or None for transformers' own tokenizers."""
    return tokenizer.pad if isinstance(tokenizer, JsonTokenizer) else None
