"""The run record: what a finished run is, in one typed model. `metrics.json` holds it;
the report, the model card, the store and `runs compare` read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# The store's JSON has no NaN (it writes null): read null back as NaN.
Number = Annotated[float, BeforeValidator(lambda v: float("nan") if v is None else v)]
Scores = dict[str, int | Number]


class TrainStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    seconds: float = 0.0
    samples_per_second: float = 0.0
    steps: int = 0
    epochs: float = 0.0
    best_dev_metric: Number = float("nan")
    extended_steps: int = 0  # steps after the plan, fine-tuning being below the probe
    head_start: str = ""  # probe, calibrated-probe, random, kept (training/probe_start.py)
    # or own (a method that builds its own output layer: zero-shot, few-shot)
    head_lr: float | None = None  # the output layer's own learning rate, if it had one
    trainable_parameters: int = 0
    total_parameters: int = 0
    resumed_from: str | None = None
    tokenize_seconds: float = 0.0
    prepare_seconds: float = 0.0
    tokenized_from_cache: bool = False
    frozen_layers: int = 0
    max_length: int = 0
    truncated_at_percentile: int | None = None
    unknown_token_share: float = 0.0
    # the process's peak RSS when training ended, before test evaluation and baselines
    peak_rss_mb: float = 0.0


class RunRecord(BaseModel):
    # extra="allow": a record written by another tunelab version still reads
    model_config = ConfigDict(extra="allow")
    name: str = ""
    task: str
    model: str
    method: str
    labels: list[str] = Field(default_factory=list)
    metric: str
    lr: float | None = None
    test: Scores = Field(default_factory=dict)
    per_class_f1: dict[str, Number] = Field(default_factory=dict)
    baselines: dict[str, Scores] = Field(default_factory=dict)
    dev_baselines: dict[str, Scores] = Field(default_factory=dict)
    # "probe" when fine-tuning ended below the frozen-encoder probe on dev and the probe
    # was shipped instead (training/probe_start.py); "untrained" when the method trains
    # nothing (zero-shot, a prompted LM)
    shipped: str = "fine-tuned"
    # temperature scaling fitted on dev (evaluation/calibration.py): temperature, dev NLL
    calibration: dict[str, float] = Field(default_factory=dict)
    # the out-of-scope threshold fitted on dev, and its dev recall and precision
    out_of_scope: dict[str, Any] | None = None
    # with training.lr: find, what the range test picked (training/lr_range.py)
    lr_range_test: dict[str, float] | None = None
    # signs that training did not work (evaluation/health.py); promotion needs --force
    warnings: list[str] = Field(default_factory=list)
    train: TrainStats = Field(default_factory=TrainStats)
    max_epochs: float | None = None
    peak_rss_mb: float = 0.0
    sizes: dict[str, int] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    fingerprints: dict[str, str] = Field(default_factory=dict)
    seed: int = 0
    threads: int = 0
    hardware: str = ""
    versions: dict[str, str | None] = Field(default_factory=dict)

    def rows(self) -> dict[str, Scores]:
        """The comparison rows: each baseline, then the shipped model (when that is the
        probe, it is named so, without gains over itself)."""
        if self.shipped == "probe":
            return {**self.baselines, "shipped: the probe (fine-tuning lost on dev)": self.test}
        return {**self.baselines, "model": self.test}

    @property
    def metric_value(self) -> float:
        return float(self.test.get(self.metric, float("nan")))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        return cls.model_validate(json.loads((Path(run_dir) / "metrics.json")
                                             .read_text(encoding="utf-8")))
