"""Token classification (NER, slot filling): a tag per word, scored as entities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from tunelab.data.examples import Examples
from tunelab.data.readers import Table
from tunelab.data.text_checks import text_problem
from tunelab.errors import DataError, did_you_mean
from tunelab.inference import on_device, softmax, takes_numpy
from tunelab.json_tokenizer import collator_for
from tunelab.tasks.alignment import (
    IGNORE,
    encode_windows,
    offsets_of_tokens,
    word_outputs,
    words_with_offsets,
)
from tunelab.tasks.base import EvalResult, TransformersClass
from tunelab.tasks.labelled import LabelledTask
from tunelab.tasks.tagging import check_tags, detect_scheme, entity_spans, split_tag, to_iob2

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

    from tunelab.config import RunConfig


@dataclass
class TokenExamples(Examples):
    tokens: list[list[str]]
    tags: list[list[str]]  # IOB2

    def inputs(self) -> list[Any]:
        return [list(words) for words in self.tokens]

    def plain_texts(self) -> list[str]:
        return [" ".join(words) for words in self.tokens]


class Entity(BaseModel):
    text: str
    type: str
    start: int = Field(description="Character offset of the first character")
    end: int = Field(description="Character offset after the last character")
    score: float = Field(description="Mean tag probability over the entity's words")


class EntityPrediction(BaseModel):
    entities: list[Entity]


def _spans_to_tags(text: str, spans: Any, where: str) -> tuple[list[str], list[str]]:
    """Words of `text` and IOB2 tags from character spans [{start, end, label}]."""
    words, offsets = words_with_offsets(text)
    tags = ["O"] * len(words)
    for span in spans or []:
        try:
            start, end, label = ((span["start"], span["end"], span["label"])
                                 if isinstance(span, dict) else span)
            start, end = int(start), int(end)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: a span must be {{start, end, label}} or "
                            f"[start, end, label], found {span!r}") from None
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        if not 0 <= start < end <= len(text) or not inside:
            raise DataError(f"{where}: span {start}-{end} ({label}) covers no word of the "
                            f"{len(text)}-character text; fix its offsets")
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{label}"
    return words, tags


class TokenClassification(LabelledTask):
    name = "token-classification"
    pipeline_tag = "token-classification"
    Prediction = EntityPrediction
    accepts_token_lists = True
    peft_task_type = "TOKEN_CLS"
    auto_model = TransformersClass("AutoModelForTokenClassification")
    default_metric = "f1"
    headline_metrics = ("f1", "precision", "recall", "f1_macro", "token_accuracy")
    trainer_metrics = ("f1", "token_accuracy")
    report_kind = "Per-entity report (strict IOB2, seqeval)"
    intended_use = ("Finding the entity types above in text like the training data. Check the "
                    "per-entity report before relying on a type with few training examples.")

    @property
    def entity_types(self) -> list[str]:
        """PER, LOC, ... : the types the tags name."""
        return sorted({split_tag(tag)[1] for tag in self.labels if tag != "O"})

    def head_description(self) -> str:
        return ("A tag per word (IOB2), decoded into entity spans with character offsets. "
                "Only the entity types above are found.")

    # --- data -------------------------------------------------------------
    @classmethod
    def examples_from_table(cls, table: Table, config: RunConfig) -> TokenExamples:
        tokens, tags = [], []
        for i, row in enumerate(table.rows):
            if "tokens" in row and "tags" in row:
                words, labels = [str(t) for t in row["tokens"]], [str(t) for t in row["tags"]]
            elif "text" in row and "spans" in row:
                words, labels = _spans_to_tags(str(row["text"]), row["spans"], table.where(i))
            else:
                raise DataError(f"{table.where(i)}: a token-classification row needs 'tokens' "
                                f"and 'tags', or 'text' and 'spans'; found: {', '.join(row)}")
            if not words:
                raise DataError(f"{table.where(i)}: empty sentence; remove it or add tokens")
            problem = next((text_problem(w) for w in words if text_problem(w)), None)
            if problem:
                raise DataError(f"{table.where(i)}: a token: {problem}")
            if len(words) != len(labels):
                raise DataError(
                    f"{table.where(i)}: sentence {i + 1} has {len(words)} tokens but "
                    f"{len(labels)} tags; give exactly one tag per token")
            tokens.append(words)
            tags.append(labels)
        scheme = config.data.tag_scheme
        if scheme == "auto":
            scheme = detect_scheme(tags)
        for i, labels in enumerate(tags):
            bad = check_tags(labels, scheme)
            if bad is not None:
                raise DataError(f"{table.where(i)}: tag '{bad}' is not valid in the {scheme} "
                                "scheme; fix the tag or set data.tag_scheme")
        converted = [to_iob2(labels, scheme) for labels in tags]
        if scheme == "iob2":  # declared IOB2: an I-X that starts an entity is a data error
            repaired = [i for i, (a, b) in enumerate(zip(tags, converted, strict=True))
                        if a != b]
            if repaired:
                logging.getLogger("tunelab").warning(
                    "%s: %d sentence(s) have an I- tag that starts an entity, which IOB2 does "
                    "not allow (first at %s); read as B- tags. If the file is IOB1, set "
                    "data.tag_scheme: iob1", table.path, len(repaired),
                    table.where(repaired[0]))
        return TokenExamples(str(table.path), table.lines, tokens, converted)

    @classmethod
    def label_set(cls, examples: TokenExamples, options: BaseModel) -> list[str]:
        kinds = sorted({tag[2:] for tags in examples.tags for tag in tags if tag != "O"})
        return ["O"] + [f"{prefix}-{kind}" for kind in kinds for prefix in "BI"]

    def check_labels(self, examples: TokenExamples, train_source: str) -> None:
        known = {tag[2:] for tag in self.labels if tag != "O"}
        for i, tags in enumerate(examples.tags):
            for tag in tags:
                if tag != "O" and tag[2:] not in known:
                    raise DataError(
                        f"{examples.where(i)}: entity type '{tag[2:]}' does not occur in the "
                        f"training data ({train_source}){did_you_mean(tag[2:], known)}; fix "
                        "the tag or add training examples of it")

    def encode(self, examples: TokenExamples, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        from datasets import Dataset

        index = self.label_index
        labels = [[index[tag] for tag in tags] for tags in examples.tags]
        windows = encode_windows(tokenizer, examples.tokens, self.max_length, labels)
        columns = {key: [f[key] for f in windows.features] for key in windows.features[0]}
        columns["length"] = [len(ids) for ids in columns["input_ids"]]
        return Dataset.from_dict(columns)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorForTokenClassification:
        if (padding := collator_for(tokenizer)) is not None:  # an exported model's
            return padding
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    # --- scoring ----------------------------------------------------------
    def _tags(self, ids: Sequence[int]) -> list[str]:
        # A predicted I-X after O is read as B-X, so strict scoring sees valid IOB2.
        return to_iob2([self.labels[i] for i in ids], "iob1")

    def compute_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        predicted = logits.argmax(-1)
        gold, guess = [], []
        for row_gold, row_pred in zip(label_ids, predicted, strict=True):
            keep = row_gold != IGNORE
            gold.append([self.labels[i] for i in row_gold[keep]])
            guess.append(self._tags(row_pred[keep]))
        from tunelab.evaluation import entities as scores  # seqeval: not to predict

        return scores.trainer_metrics(gold, guess)

    def _result(self, examples: TokenExamples, predicted: list[list[str]]) -> EvalResult:
        from tunelab.evaluation import entities as scores

        metrics = scores.entity_metrics(examples.tags, predicted)
        per_type = {key[3:]: value for key, value in metrics.items()
                    if key.startswith("f1_") and key != "f1_macro"}
        return EvalResult(metrics=metrics, report=scores.entity_report(examples.tags, predicted),
                          per_class_f1=per_type)

    def evaluate(self, examples: TokenExamples, logits: list[np.ndarray]) -> EvalResult:
        predicted = [self._tags(word_logits.argmax(-1)) for word_logits in logits]
        result = self._result(examples, predicted)
        from tunelab.evaluation.entities import plot_entity_scores

        result.figures["entities.png"] = lambda fig: plot_entity_scores(fig, result.metrics)
        for i, tags in enumerate(predicted):
            words = examples.tokens[i]
            gold = [(kind, " ".join(words[a:b])) for kind, a, b in entity_spans(examples.tags[i])]
            guess = [(kind, " ".join(words[a:b])) for kind, a, b in entity_spans(tags)]
            result.predictions.append({
                "line": examples.lines[i], "text": " ".join(words),
                "gold": [f"{kind}: {text}" for kind, text in gold],
                "predicted": [f"{kind}: {text}" for kind, text in guess],
                "correct": gold == guess,
            })
        return result

    def majority_baseline(self, train: TokenExamples, examples: TokenExamples) -> EvalResult:
        return self._result(examples, [["O"] * len(words) for words in examples.tokens])

    def probe_data(self, features: list[np.ndarray], examples: TokenExamples
                   ) -> tuple[np.ndarray, np.ndarray]:
        index = self.label_index
        return (np.concatenate(features),
                np.array([index[tag] for tags in examples.tags for tag in tags]))

    # --- inference --------------------------------------------------------
    def word_logits(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                     sentences: Sequence[Sequence[str]], batch_size: int) -> list[np.ndarray]:
        model.eval()
        return word_outputs(lambda batch: model(**on_device(model, batch)).logits,
                            tokenizer, sentences, self.max_length, batch_size,
                            as_numpy=takes_numpy(model))

    def logits_for_examples(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                            examples: TokenExamples, batch_size: int = 64) -> list[np.ndarray]:
        return self.word_logits(model, tokenizer, examples.tokens, batch_size)

    def predict(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                inputs: Sequence[Any], batch_size: int = 64, request: BaseModel | None = None
                ) -> list[dict[str, Any]]:
        """Entities with character offsets. An input is raw text (split into words here) or a
        list of tokens (offsets then refer to the tokens joined by single spaces)."""
        texts, sentences, offsets = [], [], []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                text, (words, spans) = item, words_with_offsets(item)
            else:
                words = [str(token) for token in item]
                text, spans = offsets_of_tokens(words)
            if not words:
                raise DataError(f"input {i + 1}: no words to tag; give a non-empty text")
            texts.append(text)
            sentences.append(words)
            offsets.append(spans)
        out = []
        for text, spans, word_logits in zip(texts, offsets, self.word_logits(
                model, tokenizer, sentences, batch_size), strict=True):
            probs = softmax(word_logits)
            tags = self._tags(probs.argmax(-1))
            entities = []
            for kind, first, end in entity_spans(tags):
                start, stop = spans[first][0], spans[end - 1][1]
                entities.append({"text": text[start:stop], "type": kind, "start": start,
                                 "end": stop, "score": round(float(probs[first:end].max(-1)
                                                                  .mean()), 6)})
            out.append({"entities": entities})
        return out

    def prediction_labels(self, prediction: dict[str, Any]) -> list[str]:
        return [entity["type"] for entity in prediction.get("entities", [])]
