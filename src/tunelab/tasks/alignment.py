"""Words <-> subwords for token-level tasks.

Training labels the first subword of each word; the other subwords get -100. Sentences
longer than max_length become overlapping windows, and each word's prediction is read from
the window where it has the most context on both sides, so every word gets one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.inference import batched_outputs
from tunelab.json_tokenizer import collator_for

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100
WORD = re.compile(r"\w+(?:[-'\u2019.]\w+)*|[^\w\s]")


def words_with_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into words and punctuation marks, with character offsets."""
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [(m.start(), m.end()) for m in matches]


def offsets_of_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text of pre-tokenised input joined by spaces, and each token's offsets in it."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), offsets


@dataclass
class Windows:
    """Encoded windows: model features, and for each window its sentence and word ids."""

    features: list[dict[str, Any]]
    sentence: list[int]
    word_ids: list[list[int | None]]
    starts: list[list[bool]]  # True where a token is its word's first subword


def encode_windows(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
                   max_length: int, labels: Sequence[Sequence[int]] | None = None) -> Windows:
    sentences = _with_visible_words(tokenizer, sentences)
    stride = max(max_length // 4, 1)
    encoded = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True,
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    windows = Windows([], [], [], [])
    # A word's first subword is where its earliest offset is: usually 0, but 1 or more when
    # the normaliser drops the word's first character. A window that begins in the middle
    # of a word holds only later subwords of it, which are not starts.
    first_offset: dict[tuple[int, int], int] = {}
    for w, sentence in enumerate(encoded["overflow_to_sample_mapping"]):
        for word, (start, _) in zip(encoded.word_ids(w), encoded["offset_mapping"][w],
                                    strict=True):
            if word is not None:
                key = (sentence, word)
                first_offset[key] = min(first_offset.get(key, start), start)
    for w, sentence in enumerate(encoded["overflow_to_sample_mapping"]):
        word_ids = encoded.word_ids(w)
        seen: set[int] = set()
        starts = []
        for word, (start, _) in zip(word_ids, encoded["offset_mapping"][w], strict=True):
            first = (word is not None and word not in seen
                     and start == first_offset[(sentence, word)])
            if word is not None:
                seen.add(word)
            starts.append(first)
        feature = {k: encoded[k][w] for k in keys}
        if labels is not None:
            feature["labels"] = [labels[sentence][word] if first else IGNORE
                                 for word, first in zip(word_ids, starts, strict=True)]
        windows.features.append(feature)
        windows.sentence.append(sentence)
        windows.word_ids.append(word_ids)
        windows.starts.append(starts)
    return windows


def _with_visible_words(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]]
                        ) -> list[list[str]]:
    """Words the tokenizer drops (zero-width or control characters) become its unknown token,
    so that they still get a position and a prediction."""
    vocab: dict[str, bool] = {}
    out = []
    for words in sentences:
        fixed = list(words)
        for i, word in enumerate(words):
            if word not in vocab:
                vocab[word] = bool(tokenizer.tokenize(word)) if word.strip() else False
            if not vocab[word]:
                fixed[i] = tokenizer.unk_token or "[UNK]"
        out.append(fixed)
    return out


def word_outputs(run: Callable[[dict[str, Any]], Any],
                 tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]],
                 max_length: int, batch_size: int = 64, as_numpy: bool = False
                 ) -> list[np.ndarray]:
    """Per-word vectors (logits or hidden states) of `run` over `sentences`, one array of shape
    (words, dim) per sentence, read at each word's first subword. `run` takes torch tensors,
    or numpy arrays with `as_numpy`."""
    windows = encode_windows(tokenizer, sentences, max_length)
    collator = collator_for(tokenizer)  # an exported model's: numpy already
    if collator is None:
        from transformers import DataCollatorForTokenClassification

        collator = DataCollatorForTokenClassification(
            tokenizer, return_tensors="np" if as_numpy else "pt")
    values = batched_outputs(run, collator, windows.features, batch_size)
    best: list[dict[int, tuple[int, np.ndarray]]] = [{} for _ in sentences]
    for w, window_values in enumerate(values):
        _keep_best(best[windows.sentence[w]], windows.word_ids[w], windows.starts[w],
                   window_values)
    out = []
    for s, words in enumerate(sentences):
        dim = next(iter(best[s].values()))[1].shape[-1] if best[s] else 0
        out.append(np.stack([best[s][i][1] for i in range(len(words))]) if words
                   else np.zeros((0, dim), dtype=np.float32))
    return out


def _keep_best(best: dict[int, tuple[int, np.ndarray]], word_ids: list[int | None],
               starts: list[bool], values: np.ndarray) -> None:
    content = [i for i, word in enumerate(word_ids) if word is not None]
    first, last = content[0], content[-1]
    for i in content:
        if not starts[i]:
            continue
        word = word_ids[i]
        context = min(i - first, last - i)
        if word not in best or context > best[word][0]:
            best[word] = (context, values[i])
