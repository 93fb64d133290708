"""Options of the lifecycle commands, stated once: the Python API takes these models, and
the CLI builds its flags, defaults and help from them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class RetrainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Path | None = Field(default=None, description="New labelled examples (the run's "
                              "columns)")
    feedback: bool = Field(default=False, description="Use the feedback stored for this run")
    # 3 is the smallest ratio whose mean old-intent drop stayed within 1 pt on a Banking77
    # dev split, 3 seeds (bench/continual.py --select)
    rehearsal: float = Field(default=3.0, ge=0.0, description="Original examples rehearsed "
                             "per new training example")
    holdout: float = Field(default=0.2, ge=0.05, le=0.5, description="Share of the new "
                           "examples held back to score the result")
    tolerance: float = Field(default=1.0, ge=0.0, description="Points the original test "
                             "metric may drop before promotion is refused")
    without_rehearsal: bool = Field(default=False, description="Also train without "
                                    "rehearsal, to show the forgetting")
    epochs: float = Field(default=3.0, ge=0.1, description="Passes over the new examples "
                          "and their rehearsal sample")
    lr: float | None = Field(default=None, gt=0.0, description="Default: the run's")
    name: str | None = Field(default=None, description="New run name (default: RUN-retrain)")
    overwrite: bool = Field(default=False, description="Replace an earlier retrain of that "
                            "name (never the production model)")
    promote: bool = Field(default=True, description="Promote when the gate passes")
    seed: int = Field(default=42, description="Seed of the sampling and the training")


class MonitorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(default="http://127.0.0.1:8000", description="Base URL of `tunelab "
                     "serve`")
    key: str | None = Field(default=None, description="API key (or TUNELAB_API_KEY)",
                            json_schema_extra={"envvar": "TUNELAB_API_KEY"})
    threshold: float = Field(default=0.2, gt=0.0, description="PSI that counts as drift")
    min_predictions: int = Field(default=100, ge=1, description="Fewer served predictions "
                                 "than this are not judged")
    webhook: str | None = Field(default=None, description="POST the report here on drift "
                                "(localhost only)")
