"""`tunelab compress RUN`: build the compressed variants of a run (its int8 export, a
pruned and a distilled student, each also in int8), measure them against the run, and
select the best under the user's constraints. The students are tunelab runs of their own
under RUN/compress/runs/, trained with method `distill`; everything is built in a work
folder and swapped in whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab import registry
from tunelab.console import err
from tunelab.errors import ConfigError, DataError

FOLDER = "compress"


class CompressOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Path | None = Field(default=None, description="Labelled file to measure on "
                              "(default: the run's test, else dev file)")
    layers: int = Field(default=3, ge=1, description="Layers the distilled student keeps")
    ffn_keep: float = Field(default=0.5, gt=0.0, lt=1.0, description="Share of each layer's "
                            "feed-forward neurons the pruned student keeps")
    epochs: float = Field(default=2.0, gt=0.0, description="Training epochs per student")
    temperature: float = Field(default=2.0, gt=0.0, description="Distillation temperature")
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Weight of the teacher's "
                         "distribution against the gold labels")
    unlabelled: Path | None = Field(default=None, description="Texts without labels, one per "
                                    "line, that the run labels for the students")
    max_drop: float = Field(default=1.0, ge=0.0, description="Largest metric loss allowed "
                            "for the selected variant, in points")
    target: Literal["latency", "size", "throughput"] = Field(
        default="throughput", description="What the selection optimises")


STUDENTS = {"pruned": lambda o: {"ffn_keep": o.ffn_keep},
            "distilled": lambda o: {"layers": o.layers}}


def check_data(run_dir: Path, data: Path | None) -> tuple[Any, Any, str, Any]:
    """The run (torch), the labelled examples to measure on and their source, and the dev
    examples the selection is made on with theirs (None: the measured ones), or an error
    before anything is written."""
    from tunelab.predictor import Predictor, dev_choice_data, labelled_check_data

    predictor = Predictor(run_dir, backend="torch")
    method = predictor.meta["method"]
    if registry.methods.get(method).for_export(predictor.model) is None:
        raise ConfigError(f"{run_dir}: method '{method}' has no plain model to quantise, "
                          "prune or distil (its virtual tokens or language model sit outside "
                          "the encoder's weights); compress a full, LoRA, IA3, AdaLoRA or "
                          "adapter run")
    config = predictor.run_config()
    if config.data.train is None or not Path(config.data.train).is_file():
        raise DataError(f"{run_dir}: its training file {config.data.train} is gone; the "
                        "students train on it, so restore it to compress this run")
    examples, source = labelled_check_data(predictor, data)
    return predictor, examples, source, dev_choice_data(predictor, source)


def train_student(run_dir: Path, name: str, options: CompressOptions, into: Path) -> Path:
    """A student run under `into`, distilled from the run with the variant's cut."""
    from tunelab.config import load_config, parse_config
    from tunelab.runner import train_run

    config = load_config(run_dir / "config.yaml", saved=True)
    raw = config.model_dump(mode="json")
    raw.update(name=name, output_dir=str(into))
    raw["method"] = {"name": "distill", "teacher": str(run_dir), **STUDENTS[name](options),
                     "temperature": options.temperature, "alpha": options.alpha,
                     "unlabelled": str(options.unlabelled) if options.unlabelled else None}
    # the student ships as trained: no probe in its place, no training past the plan
    raw["training"].update(epochs=options.epochs, lr=None, freeze_layers=0,
                           fallback_to_probe=False, extend_budget=0)
    raw["evaluation"].update(baselines=False)
    config = parse_config(raw)
    if trained_already(config, run_dir):
        err.print(f"{name}: the student at {config.run_dir} was trained with these settings "
                  "after the teacher; reusing it", highlight=False)
        return config.run_dir
    return train_run(config, overwrite=True).run_dir


def trained_already(config: Any, teacher: Path) -> bool:
    """A finished student with the same config, trained after the teacher last changed."""
    done, saved = config.run_dir / "metrics.json", config.run_dir / "config.yaml"
    return (done.is_file() and saved.is_file()
            and saved.read_text(encoding="utf-8") == config.to_yaml()
            and done.stat().st_mtime > (teacher / "model").stat().st_mtime)


def original_int8(run_dir: Path) -> None:
    """The run's own ONNX export (the default recipe and gate), unless one is there."""
    from tunelab.api import export
    from tunelab.export.onnx import OnnxExporter

    if OnnxExporter.find(run_dir, "onnx") is None:
        export(run_dir)
