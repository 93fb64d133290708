"""What training shows while it runs: a line saying what it is about to do, one progress bar
with the latest loss and dev metric (on a terminal), or a log line every half minute (in CI
or under nohup), and a line when early stopping ends the run. It replaces the Trainer's own
printing of raw log dicts; the logs still go to TensorBoard and log_history.json."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

LOG_EVERY_S = 30.0


class TrainingProgress(TrainerCallback):
    def __init__(self, header: str, metric: str, stream: TextIO | None = None) -> None:
        self.header, self.metric = header, metric
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.loss: float | None = None
        self.dev: float | None = None
        self.started = self.logged = 0.0
        self.first_step = 0

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **_: Any) -> None:
        micro, accumulated = args.per_device_train_batch_size, args.gradient_accumulation_steps
        split = f" in micro-batches of {micro}" if accumulated > 1 else ""
        self.say(f"{self.header}; {state.max_steps} optimizer steps, batch "
                 f"{micro * accumulated}{split}, lr {args.learning_rate:g}")
        if state.global_step:
            self.say(f"resuming at step {state.global_step} of {state.max_steps}")
        self.first_step = state.global_step
        self.started = self.logged = time.perf_counter()
        if self.stream.isatty():
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step",
                            desc="training", file=self.stream, dynamic_ncols=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **_: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        elif time.perf_counter() - self.logged >= LOG_EVERY_S:
            self.logged = time.perf_counter()
            self.say(self.status(state))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **_: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if f"eval_{self.metric}" in logs:
            self.dev = float(logs[f"eval_{self.metric}"])
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        parts = [f"loss {self.loss:.4f}" if self.loss is not None else "",
                 f"dev {self.metric} {self.dev:.4f}" if self.dev is not None else ""]
        return ", ".join(p for p in parts if p)

    def status(self, state: TrainerState) -> str:
        done = state.global_step - self.first_step
        elapsed = time.perf_counter() - self.started
        left = elapsed / done * (state.max_steps - state.global_step) if done else 0.0
        return (f"step {state.global_step}/{state.max_steps} "
                f"({state.global_step / max(state.max_steps, 1):.0%}), {self.postfix()}, "
                f"about {left / 60:.1f} min left")

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **_: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if state.global_step < state.max_steps:
            best = (f"; the best dev {self.metric} was {state.best_metric:.4f}"
                    if state.best_metric is not None else "")
            self.say(f"early stopping: dev {self.metric} stopped improving; ended at step "
                     f"{state.global_step} of {state.max_steps}{best}")
