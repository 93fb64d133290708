"""Load a trained run for prediction and evaluation, with no network access."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tunelab import registry
from tunelab.config import RunConfig, load_config, read_yaml, validate_options
from tunelab.data.text_checks import text_problem
from tunelab.errors import DataError, ModelError
from tunelab.export.base import Exporter
from tunelab.json_tokenizer import JsonTokenizer
from tunelab.methods.label_sentences import take_labels_per_request
from tunelab.rundir import MODEL_META, read_json
from tunelab.tasks.base import EvalResult, Task


def model_dir_of(run: str | Path) -> Path:
    path = Path(run)
    for candidate in (path / "model", path):
        if (candidate / MODEL_META).is_file():
            return candidate
    raise ModelError(
        f"{path}: not a tunelab run (no model/{MODEL_META}); give a run directory written by "
        "`tunelab train`, such as runs/demo"
    )


def run_columns(run: str | Path) -> dict[str, str]:
    """The text and label column names the run was trained on, for reading and writing
    files in its own layout."""
    path = model_dir_of(run).parent / "config.yaml"
    data = read_yaml(path).get("data", {}) if path.is_file() else {}
    defaults = {"text_column": "text", "label_column": "label"}
    columns = {key: str(data.get(key, value)) for key, value in defaults.items()}
    if data.get("text_pair_column") is not None:
        columns["text_pair_column"] = str(data["text_pair_column"])
    return columns


def backends() -> list[str]:
    """auto, torch, then each registered exporter's backends."""
    names = ["auto", "torch"]
    for exporter in registry.exporters.names():
        names += list(registry.exporters.get(exporter).backends)
    return names


def exporter_for(backend: str) -> type[Exporter]:
    """The registered exporter that offers `backend`."""
    for name in registry.exporters.names():
        exporter = registry.exporters.get(name)
        if backend in exporter.backends:
            return exporter
    raise ModelError(f"unknown backend '{backend}'; choose one of: {', '.join(backends())}")


def exported_model(run_dir: Path, backend: str) -> tuple[type[Exporter], Path] | None:
    """The exporter and file a backend choice selects; None means PyTorch."""
    if backend == "torch":
        return None
    if backend == "auto":  # the first exporter whose default backend has been written
        for name in registry.exporters.names():
            exporter = registry.exporters.get(name)
            found = exporter.find(run_dir, exporter.default_backend)
            if found is not None:
                return exporter, found
        return None
    exporter = exporter_for(backend)
    found = exporter.find(run_dir, backend)
    if found is None:
        raise ModelError(f"{run_dir}: no {exporter.name} export for backend {backend}; run "
                         f"`tunelab export {run_dir} --format {exporter.name}` first, or use "
                         "--backend torch")
    return exporter, found


def selected_variant(run: str | Path) -> tuple[Path, str, Path | None, str | None]:
    """(run, backend, model file, variant name) that backend auto loads: the variant
    `tunelab compress` selected (RUN/compress/selected.json), else the run itself."""
    chosen = Path(run) / "compress" / "selected.json"
    if not chosen.is_file():
        return Path(run), "auto", None, None
    selected = read_json(chosen)
    variant = Path(run) / selected["run"]
    model_file = Path(run) / selected["file"] if selected.get("file") else None
    if not (variant / "model").is_dir() or (model_file is not None and not model_file.is_file()):
        raise ModelError(f"{chosen}: selects variant '{selected['variant']}' at {variant}, "
                         "which is gone; run `tunelab compress` again, delete that file to "
                         "serve the run itself, or pass --backend")
    return variant, selected["backend"], model_file, selected["variant"]


def load_tokenizer(model_dir: Path, torch_model: bool) -> Any:
    """The run's tokenizer. An exported model reads tokenizer.json with the tokenizers
    library alone: transformers takes half a second to import, and its Auto class imports
    torch, which an exported model predicts without."""
    if not torch_model and JsonTokenizer.supports(model_dir):
        return JsonTokenizer(model_dir)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


class Predictor:
    """A trained model ready for `predict(texts)` and `evaluate(file)`. `backend`: auto (the
    exported model when there is one, else PyTorch), torch, or an exporter's backend
    (onnx, onnx-fp32). `model_file` loads that file for the backend instead of the run's."""

    def __init__(self, run: str | Path, backend: str = "auto", threads: int | None = None,
                 spinning: bool = True, model_file: Path | None = None) -> None:
        self.compressed: str | None = None  # the variant `tunelab compress` selected
        if backend == "auto" and model_file is None:
            run, backend, model_file, self.compressed = selected_variant(run)
        self.model_dir = model_dir_of(run)
        self.run_dir = self.model_dir.parent if self.model_dir.name == "model" else self.model_dir
        self.meta = read_json(self.model_dir / MODEL_META)
        self.task: Task = registry.tasks.get(self.meta["task"]).from_meta(self.meta)
        exported = (exported_model(self.run_dir, backend) if model_file is None
                    else (exporter_for(backend), model_file))
        if exported is None:
            self.backend = "torch"
            self.model = registry.methods.get(self.meta["method"]).load(
                self.model_dir, self.task, self.meta)
        else:
            exporter, path = exported
            self.backend = path.name
            self.model = exporter.load(path, threads, spinning)
            take_labels_per_request(self.model, self.model_dir)
        self.model.eval()
        self.tokenizer = load_tokenizer(self.model_dir, torch_model=exported is None)

    @property
    def labels(self) -> list[str]:
        return list(getattr(self.task, "labels", []))

    @functools.cached_property
    def takes_pairs(self) -> bool:
        """Whether the model was trained on text pairs (data.text_pair_column)."""
        if "text_pair" in self.meta:
            return bool(self.meta["text_pair"])
        path = self.run_dir / "config.yaml"  # runs written before the flag was recorded
        return bool(path.is_file() and read_yaml(path).get("data", {}).get("text_pair_column"))

    def check_inputs(self, inputs: list[Any]) -> None:
        """A clear error for an input the model cannot take: a single text for a pair model,
        a pair for a single-text model, or an unusable text."""
        pairs = self.takes_pairs
        for i, item in enumerate(inputs, start=1):
            is_pair = isinstance(item, (tuple, list))
            if pairs and not (is_pair and len(item) == 2):
                raise DataError(f"input {i}: this model was trained on text pairs; give "
                                "[first, second] for each input (predict: a second column "
                                "in --input)")
            if not pairs and is_pair and not self.task.accepts_token_lists:
                raise DataError(f"input {i}: this model takes single texts, not pairs")
            for text in item if is_pair else [item]:
                problem = text_problem(text)
                if problem:
                    raise DataError(f"input {i}: {problem}")

    def request(self, options: dict[str, Any] | BaseModel | None) -> BaseModel:
        """The task's per-request options, validated (see Task.Request)."""
        if isinstance(options, BaseModel):
            return options
        return validate_options(self.task.Request, options or {},
                                lambda name: f"request option {name or '?'}")

    def predict(self, inputs: str | list[Any], batch_size: int = 64,
                **options: Any) -> Any:
        """One prediction for one input; a list for a list. A pair model takes
        [first, second] pairs. Keyword options are the task's request options."""
        single = isinstance(inputs, str) or (
            self.takes_pairs and isinstance(inputs, tuple) and len(inputs) == 2
            and all(isinstance(t, str) for t in inputs))
        batch = [inputs] if single else list(inputs)
        self.check_inputs(batch)
        out = self.task.predict(self.model, self.tokenizer, batch, batch_size,
                                self.request(options))
        return out[0] if single else out

    def run_config(self, overrides: list[str] | None = None, data: Path | None = None
                   ) -> RunConfig:
        return load_config(self.run_dir / "config.yaml", overrides,
                           missing={"data": {"train": str(data)}}, saved=True)

    def read_labelled(self, path: Path, config: RunConfig | None = None) -> Any:
        from tunelab.run_data import read_examples

        config = config or self.run_config(data=path)
        examples = read_examples(self.task, path, config)
        self.task.check_examples(examples, "the model's label set")
        if len(examples) == 0:
            raise DataError(f"{path}: no examples to evaluate")
        return examples

    def evaluate(self, data: str | Path, overrides: list[str] | None = None,
                 batch_size: int = 64) -> EvalResult:
        """Score the model on a labelled file read with the run's column mapping."""
        path = Path(data)
        config = self.run_config(overrides, path)
        return self.score(self.read_labelled(path, config), batch_size)

    def score(self, examples: Any, batch_size: int = 64) -> EvalResult:
        """Score the model on examples already read."""
        logits = self.task.logits_for_examples(self.model, self.tokenizer, examples, batch_size)
        return self.task.evaluate(examples, logits)


def labelled_check_data(predictor: Predictor, data: Path | None) -> tuple[Any, str]:
    """Labelled examples to check a model against: the file given, else the run's test
    file, else its dev file."""
    if data is not None:
        if not Path(data).is_file():
            raise DataError(f"{data}: file not found; give a labelled file with --data")
        return predictor.read_labelled(Path(data)), str(data)
    config = predictor.run_config()
    for path in (config.data.test, config.data.dev):
        if path is not None and Path(path).is_file():
            return predictor.read_labelled(Path(path), config), str(path)
    raise DataError(f"{predictor.run_dir}: the run has no test or dev file to check against "
                    "(they were split from train); pass a labelled file with --data FILE")


def dev_choice_data(predictor: Predictor, measured_on: str) -> tuple[Any, str] | None:
    """The run's own dev examples (its dev file, or its share of train), on which a choice
    among variants is made, so that the file they are measured on does not choose; None when
    that file is dev itself, or when dev can no longer be rebuilt (its training file gone)."""
    config = predictor.run_config()
    dev = config.data.dev
    if dev is not None:
        if str(dev) == measured_on or not Path(dev).is_file():
            return None
        return predictor.read_labelled(Path(dev), config), str(dev)
    if config.data.train is None or not Path(config.data.train).is_file():
        return None
    from tunelab.run_data import load_splits

    _, splits = load_splits(config)
    source = splits.sources.get("dev", "")
    return (splits.dev, source) if len(splits.dev) and source != measured_on else None
