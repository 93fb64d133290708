"""One contender's training run, in its own process so that its peak RSS is its own.

    python bench/speed/contenders.py NAME DATA_DIR OUT.json [--epochs E] [--lr LR] [--set k=v ...]

NAME is `tutorial` (a plain PyTorch loop written as tutorials do), `trainer` (a plain
transformers.Trainer script with the GLUE example's padding to 128) or `tunelab` (tunelab's
own pipeline; --set overrides its config). All share the model, data, epochs budget,
learning rate and batch size, and evaluate on the dev set every quarter epoch. Clocks
exclude evaluation time and include tokenisation and any caching.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODEL = "minilm-l6"
BATCH = 32
MAX_LENGTH = 128


def read_split(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hf_model(num_labels: int) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.models import resolve_model

    source = resolve_model(MODEL).source
    return (AutoTokenizer.from_pretrained(source),
            AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels))


class Recorder:
    """Training clock that stops while evaluating."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused = 0.0
        self.curve: list[tuple[float, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def evaluation(self, evaluate: Any) -> float:
        at = self.elapsed()
        begun = time.perf_counter()
        accuracy = evaluate()
        self.paused += time.perf_counter() - begun
        self.curve.append((round(at, 2), round(accuracy, 4)))
        return accuracy


def tutorial(data: Path, epochs: float, lr: float) -> dict[str, Any]:
    from torch.utils.data import DataLoader, TensorDataset

    _, labels = read_split(data / "train.csv")
    names = sorted(set(labels))
    clock = Recorder()
    tokenizer, model = hf_model(len(names))

    def tensors(split: str) -> TensorDataset:
        x, y = read_split(data / f"{split}.csv")
        enc = tokenizer(x, padding="max_length", truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        return TensorDataset(enc["input_ids"], enc["attention_mask"],
                             torch.tensor([names.index(label) for label in y]))

    train = DataLoader(tensors("train"), batch_size=BATCH, shuffle=True)
    dev, test = tensors("dev"), tensors("test")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    @torch.no_grad()
    def accuracy(split: TensorDataset) -> float:
        model.eval()
        correct = 0
        for ids, mask, y in DataLoader(split, batch_size=64):
            correct += int((model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == y).sum())
        model.train()
        return correct / len(split)

    steps = math.ceil(epochs * len(train))
    every = max(1, len(train) // 4)
    model.train()
    step = 0
    while step < steps:
        for ids, mask, y in train:
            loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % every == 0 or step == steps:
                clock.evaluation(lambda: accuracy(dev))
            if step == steps:
                break
    return {"curve": clock.curve, "train_seconds": clock.elapsed(), "test_acc": accuracy(test),
            "samples": steps * BATCH, "model": model}


def trainer_defaults(data: Path, epochs: float, lr: float) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from tunelab.training.trainer import TrainingClock

    _, labels = read_split(data / "train.csv")
    names = sorted(set(labels))
    started = time.perf_counter()
    tokenizer, model = hf_model(len(names))

    def dataset(split: str) -> Dataset:
        x, y = read_split(data / f"{split}.csv")
        ds = Dataset.from_dict({"sentence": x, "label": [names.index(v) for v in y]})
        return ds.map(lambda b: tokenizer(b["sentence"], padding="max_length",
                                          max_length=MAX_LENGTH, truncation=True), batched=True)

    train, dev, test = dataset("train"), dataset("dev"), dataset("test")
    steps_per_epoch = math.ceil(len(train) / BATCH)
    args = TrainingArguments(output_dir=str(data / "trainer-out"),
                             per_device_train_batch_size=BATCH, learning_rate=lr,
                             num_train_epochs=epochs, eval_strategy="steps",
                             eval_steps=max(1, steps_per_epoch // 4), save_strategy="no",
                             report_to="none", logging_steps=50, seed=42)

    def metrics(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((prediction.predictions.argmax(-1)
                                   == prediction.label_ids).mean())}

    clock = TrainingClock()
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                      compute_metrics=metrics, callbacks=[clock])
    prepare = time.perf_counter() - started
    trainer.train()
    curve = [(round(prepare + h["train_seconds"], 2), h["eval_accuracy"])
             for h in trainer.state.log_history if "eval_accuracy" in h]
    train_seconds = prepare + time.perf_counter() - clock.started - clock.evaluating
    test_acc = trainer.evaluate(test)["eval_accuracy"]
    return {"curve": curve, "train_seconds": train_seconds, "test_acc": test_acc,
            "samples": trainer.state.global_step * BATCH, "model": trainer.model}


def tunelab_run(data: Path, epochs: float, lr: float, overrides: list[str]) -> dict[str, Any]:
    import tunelab
    from tunelab.config import apply_override, parse_config
    n_train = len(read_split(data / "train.csv")[0])
    raw: dict[str, Any] = {
        "name": "tunelab", "output_dir": str(data / "runs"), "seed": 42,
        "model": {"name": MODEL},
        "data": {"train": str(data / "train.csv"), "dev": str(data / "dev.csv"),
                 "test": str(data / "test.csv")},
        "training": {"epochs": epochs, "lr": lr, "batch_size": BATCH, "logging_steps": 25,
                     "eval_every": max(1, math.ceil(n_train / BATCH) // 4),
                     "early_stopping": {"patience": 4}},
        "evaluation": {"baselines": False},
    }
    for assignment in overrides:
        apply_override(raw, assignment)
    result = tunelab.train(parse_config(raw, "bench:tunelab"), overwrite=True)
    train = result.metrics["train"]
    history = json.loads((result.run_dir / "log_history.json").read_text())
    curve = [(round(train["prepare_seconds"] + h["train_seconds"], 2), h["eval_accuracy"])
             for h in history if "eval_accuracy" in h]
    evaluating = sum(h["eval_runtime"] for h in history if "eval_runtime" in h)
    return {"curve": curve, "train_seconds": train["seconds"] - evaluating,
            "test_acc": result.metrics["test"]["accuracy"],
            "samples": train["steps"] * BATCH, "model": None,
            "stopped_early": train["epochs"] < epochs - 1e-6}


def flops_per_token(model: torch.nn.Module, mean_length: float, frozen_layers: int = 0,
                    epochs: float = 1.0) -> float:
    """Training FLOPs per real token: 6 x non-embedding parameters plus attention (QK^T and
    AV, 12 x seq x width per layer). Frozen layers run forward only, and once in all when
    cached. Embeddings are lookups and cost no matmul FLOPs."""
    config = model.config
    layers, width = config.num_hidden_layers, config.hidden_size
    per_layer = sum(p.numel() for p in model.base_model.encoder.layer[0].parameters())
    head = sum(p.numel() for n, p in model.named_parameters()
               if "encoder.layer" not in n and "embeddings" not in n)
    attention = 4 * mean_length * width  # forward, per layer
    forward_layer = 2 * per_layer + attention
    trained = layers - frozen_layers
    return 3 * (trained * forward_layer + 2 * head) + frozen_layers * forward_layer / epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=["tutorial", "trainer", "tunelab"])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    if args.name == "tutorial":
        row = tutorial(args.data, args.epochs, args.lr)
    elif args.name == "trainer":
        row = trainer_defaults(args.data, args.epochs, args.lr)
    else:
        row = tunelab_run(args.data, args.epochs, args.lr, args.overrides)
    peak = peak_rss_mb()  # before anything else is loaded
    model = row.pop("model") or hf_model(2)[1]
    texts, _ = read_split(args.data / "train.csv")
    from transformers import AutoTokenizer

    from tunelab.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).source)
    mean_length = float(np.mean([len(ids) for ids in tokenizer(texts)["input_ids"]]))
    frozen = next((int(o.split("=")[1]) for o in args.overrides
                   if o.startswith("training.freeze_layers=")), 0)
    row.update({
        "name": args.name, "overrides": args.overrides, "epochs": args.epochs, "lr": args.lr,
        "samples_per_second": row["samples"] / row["train_seconds"],
        "useful_tokens_per_second": row["samples"] * mean_length / row["train_seconds"],
        "mean_length": mean_length,
        "flops_per_token": flops_per_token(model, mean_length, frozen,
                                           max(1.0, row["samples"] / len(texts))),
        "peak_rss_mb": peak, "threads": torch.get_num_threads(),
    })
    args.out.write_text(json.dumps(row, indent=2))
    print(json.dumps({k: v for k, v in row.items() if k != "curve"}), file=sys.stderr)


if __name__ == "__main__":
    main()
