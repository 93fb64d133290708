"""The run config: pydantic models and their validation (the YAML file and `--set`
overrides are read in config_files.py).

The config is the single source of truth for a run. Unknown keys are errors that
name the closest valid key; bad values are errors that name the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tunelab import registry
from tunelab.config_checks import (
    HF_NAMES,
    ConfigKeyError,
    divides_batch_size,
    validate_options,
    validation_problem,
)
from tunelab.config_files import apply_override, read_yaml
from tunelab.errors import ConfigError, did_you_mean
from tunelab.privacy.options import MaskSetting

# Header-less files name their columns by position: `text_column: 0`.
Column = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "minilm-l6"
    allow_network: bool = False
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)


class Choice(BaseModel):
    """A section that picks a registered implementation by name (`key`); its other keys are
    that implementation's options, validated by its `Options` model."""

    model_config = ConfigDict(extra="allow")
    key: ClassVar[str]
    registry_name: ClassVar[str]

    @classmethod
    def implementation(cls, name: str) -> Any:
        return getattr(registry, cls.registry_name).get(name)

    def chosen(self) -> str:
        return getattr(self, self.key)

    def option_values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def options(self) -> BaseModel:
        return self.implementation(self.chosen()).Options(**self.option_values())

    @model_validator(mode="after")
    def _validate_options(self) -> Choice:
        options_cls = self.implementation(self.chosen()).Options
        try:
            validated = options_cls(**self.option_values())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']} (got {first.get('input')!r})") from None
        for key, value in validated.model_dump().items():
            setattr(self, key, value)
        return self


class TaskConfig(Choice):
    """`type` picks a registered task; the other keys are that task's options."""

    key = "type"
    registry_name = "tasks"
    type: str = "text-classification"

    @field_validator("type")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return registry.tasks.check(value)


class DataConfig(Section):
    train: Path | None = None  # only a method that learns nothing (zero-shot) goes without
    dev: Path | None = None
    test: Path | None = None
    format: str = "auto"
    header: bool = True
    text_column: Column = "text"
    text_pair_column: Column | None = None
    label_column: Column = "label"
    label_separator: str = "|"
    tag_column: int = -1  # CoNLL files: which column holds the tags (-1: the last)
    tag_scheme: Literal["auto", "iob1", "iob2", "iobes", "bmes"] = "auto"
    dev_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    max_length: int = Field(default=128, ge=8, le=8192)
    # Truncate at this percentile of the training texts' token lengths (if below max_length).
    length_percentile: float | None = Field(default=None, gt=50.0, le=100.0)
    cache_tokenized: bool = True  # reuse tokenised data across runs (~/.cache/tunelab)
    # train on a seeded sample of this many examples a label (few-shot experiments)
    examples_per_class: int | None = Field(default=None, ge=1)
    # replace personal data in every file before it is tokenised (true: the default types)
    mask_pii: MaskSetting = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return value if value == "auto" else registry.readers.check(value)


class EarlyStoppingConfig(Section):
    enabled: bool = True
    metric: str | None = None
    patience: int = Field(default=3, ge=1)  # evaluations without a better dev metric
    min_epochs: float = Field(default=1.0, ge=0.0)  # never stop before this many epochs


class TrainingConfig(Section):
    # "auto": from the data size (training/plan.py); early stopping on dev ends most runs
    epochs: Literal["auto"] | float = "auto"
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    # examples a forward pass holds, the rest of batch_size by gradient accumulation: fewer
    # activations in memory, the same update; None: the method's (8 for the PEFT methods)
    micro_batch_size: Annotated[int | None, AfterValidator(divides_batch_size)] = Field(
        default=None, ge=1)
    # None: the method's default; "find": a learning-rate range test picks it
    lr: float | Literal["find"] | None = None
    # the output layer's own learning rate; None: 1e-3 (or lr if larger) for a new head that
    # starts random under head_init: auto, else lr
    head_lr: float | None = Field(default=None, gt=0.0, lt=1.0)
    scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
        "constant_with_warmup", "inverse_sqrt",
    ] = "linear"
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    # "auto": about 15 evaluations a run, whatever its length (training/plan.py)
    eval_every: Literal["epoch", "auto"] | int = "auto"
    group_by_length: bool = True
    # Freeze the embeddings and the lowest k layers; with cache_frozen their outputs are
    # computed once, so later epochs pay only for the top layers.
    freeze_layers: int = Field(default=0, ge=0)
    cache_frozen: bool = True
    # Recompute each layer's activations in the backward pass instead of keeping them:
    # less memory, more time (see bench/RESULTS.md, "Where training memory goes").
    gradient_checkpointing: bool = False
    # "probe": the classifier head starts as a linear probe fitted on the frozen encoder
    # (LP-FT); "calibrated-probe": that probe divided by its temperature on dev; "keep": as
    # the model was built (a new head is random; a continued model's head keeps its rows);
    # "auto": probe with many labels, else random at head_lr (training/probe_start.py)
    head_init: Literal["auto", "probe", "calibrated-probe", "keep"] = "auto"
    # when fine-tuning ends below the frozen-encoder probe on dev, ship the probe (and say so)
    fallback_to_probe: bool = True
    # a run that used its whole plan and is below the probe on dev trains up to this many
    # times its plan again, while dev improves (training/extend.py); 0 turns it off
    extend_budget: float = Field(default=1.0, ge=0.0, le=10.0)
    dataloader_workers: int = Field(default=0, ge=0)
    # None: every 5% of the run's steps, so a short run still logs its loss
    logging_steps: int | None = Field(default=None, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

    @field_validator("epochs", mode="before")
    @classmethod
    def _auto_or_positive(cls, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        if not number > 0:
            raise ValueError("must be 'auto' or a positive number of epochs")
        return number

    @field_validator("lr", mode="before")
    @classmethod
    def _rate_or_find(cls, value: Any) -> Any:
        if value is None or value == "find":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        if not 0 < number < 1:
            raise ValueError("must be a learning rate between 0 and 1 (such as 5e-5), or "
                             "'find' for a range test")
        return number

    @field_validator("eval_every")
    @classmethod
    def _positive_steps(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'auto', 'epoch' or a positive number of steps")
        return value


class EvaluationConfig(Section):
    baselines: bool = True
    probe_max_examples: int = Field(default=2000, ge=10)
    # fit a temperature on dev and fold it into the head: calibrated probabilities, the
    # same decisions (single-label and token tasks)
    calibrate: bool = True


class MethodConfig(Choice):
    """`name` picks a registered method; the other keys are that method's options."""

    key = "name"
    registry_name = "methods"
    name: str = "full"

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return registry.methods.check(value)


class RunConfig(Section):
    name: str = "run"
    output_dir: Path = Path("runs")
    seed: int = 42
    threads: int | None = Field(default=None, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, value: str) -> str:
        from tunelab.rundir import check_run_name

        return check_run_name(value)

    @field_validator("method", mode="before")
    @classmethod
    def _method_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("task", mode="before")
    @classmethod
    def _task_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _training_data(self) -> RunConfig:
        if self.data.train is not None:
            return self
        method = self.method.name
        if getattr(registry.methods.get(method), "needs_training_data", True):
            raise ValueError(f"data.train: missing; method {method} learns from labelled "
                             "examples, so give it a training file (only method: zero-shot "
                             "runs without one)")
        if self.data.dev is None and self.data.test is None:
            raise ValueError("data.test: missing; a run without training data needs a "
                             "labelled file to be scored on: set data.test (or data.dev)")
        if not self.task.option_values().get("labels"):
            raise ValueError(f"task.labels: missing; method {method} without training data "
                             "takes its label names from the config: set task.labels: "
                             "[label_a, label_b, ...]")
        if self.data.examples_per_class is not None:
            raise ValueError("data.examples_per_class: there is no training file to sample "
                             "from; set data.train or remove examples_per_class")
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _check_keys(raw: Any, model_cls: type[BaseModel], prefix: str = "") -> None:
    """Reject unknown keys, naming the closest valid one. Pydantic alone says only 'extra'."""
    if not isinstance(raw, dict):
        return
    fields = model_cls.model_fields
    allowed = set(fields)
    options: type[BaseModel] | None = None
    if issubclass(model_cls, Choice):
        name = raw.get(model_cls.key, fields[model_cls.key].default)
        if name in getattr(registry, model_cls.registry_name):
            options = model_cls.implementation(name).Options
            allowed |= set(options.model_fields)
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in allowed:
            hint = (f" (did you mean '{HF_NAMES[key]}'?)" if HF_NAMES.get(key) in allowed
                    else did_you_mean(str(key), allowed))
            raise ConfigKeyError(where, (
                f"unknown key '{where}'{hint}; "
                f"valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: "
                f"{', '.join(sorted(allowed))}"))
        if key in fields:
            annotation = fields[key].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _check_keys(value, annotation, f"{where}.")
    if options is not None:  # the chosen implementation's options, named as config keys
        section = prefix.rstrip(".")
        validate_options(options, {k: v for k, v in raw.items() if k in options.model_fields},
                         lambda name: f"{prefix}{name}" if name else section)


def parse_config(raw: Any, source: str = "config", overrides: list[str] | None = None
                 ) -> RunConfig:
    """Check and validate a raw config. A bad key is named with where it came from: the
    `--set` flag among `overrides` that set it, else `source`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, data, training ...)")
    try:
        try:
            _check_keys(raw, RunConfig)
            return RunConfig.model_validate(raw)
        except ValidationError as error:
            raise validation_problem(error) from None
    except ConfigKeyError as problem:
        setting = [f for f in overrides or [] if _sets(f, problem.key)]
        flag = max(setting, key=lambda f: len(f.partition("=")[0])) if setting else None
        if flag is not None:
            raise ConfigError(f"--set {flag}: {problem.problem}; fix the value after --set"
                              ) from None
        raise ConfigError(f"{source}: {problem.problem}; fix this value in the config"
                          ) from None


def _sets(assignment: str, key: str) -> bool:
    """Whether `--set assignment` set `key`, or a section holding it, or a key inside it."""
    target = assignment.partition("=")[0].strip()
    return key == target or key.startswith(f"{target}.") or target.startswith(f"{key}.")


def load_config(path: Path, overrides: list[str] | None = None,
                missing: dict[str, Any] | None = None, saved: bool = False) -> RunConfig:
    """The one way a config is read: YAML, then `--set` overrides, then validation. A run
    written without a config.yaml passes `missing`, the raw config to use instead. `saved`:
    the config.yaml of a finished run, whose task section may hold keys an older tunelab
    wrote for every task (multi_label and threshold on NER runs); those are dropped."""
    raw = read_yaml(path) if missing is None or path.is_file() else dict(missing)
    task = raw.get("task") if isinstance(raw, dict) else None
    if saved and isinstance(task, dict) and task.get("type", "text-classification") in \
            registry.tasks:
        known = {"type", *registry.tasks.get(task.get("type", "text-classification"))
                 .Options.model_fields}
        raw["task"] = {key: value for key, value in task.items() if key in known}
    for assignment in overrides or []:
        apply_override(raw, assignment)
    return parse_config(raw, source=str(path), overrides=overrides)
