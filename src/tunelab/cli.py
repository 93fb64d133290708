"""The `tunelab` command line: parse, call the API, print. Input errors exit with code 2."""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from tunelab import cli_lifecycle, cli_trust, registry
from tunelab.cli_options import options_from
from tunelab.compress.build import CompressOptions
from tunelab.console import err, out, quiet_libraries
from tunelab.data.text_checks import cell_text
from tunelab.errors import DataError, TunelabError
from tunelab.serving.settings import ServeSettings

# markdown: a docstring's line breaks join into one paragraph in the help
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
                  pretty_exceptions_enable=False)

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"tunelab {version('tunelab')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit")] = False) -> None:
    """Fine-tune a pretrained language model on your labelled data, evaluate it against
    baselines, export it and serve it: offline, on an ordinary CPU."""


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set training.lr=3e-5 (repeatable)"),
]


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config")] = Path("config.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file")] = False,
) -> None:
    """Write a commented example config, and make its folder a project: runs started
    there or below are recorded in its .tunelab/ store."""
    from tunelab.rundir import write_text
    from tunelab.store.db import PROJECT_FOLDER

    if path.exists() and not force:
        raise TunelabError(f"{path} already exists; pass --force to replace it")
    write_text(path, files("tunelab").joinpath("templates/config.yaml").read_text("utf-8"))
    project = path.resolve().parent / PROJECT_FOLDER
    project.mkdir(exist_ok=True)
    out.print(f"wrote {path}; runs from {project.parent} are recorded in {project}/; "
              f"edit data.train, then run: tunelab train {path}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config (YAML)")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing run directory")] = False,
) -> None:
    """Fine-tune a model as the config says, then print the evaluation report."""
    from tunelab.config import load_config

    cfg = load_config(config, set_)
    quiet_libraries()
    from tunelab.api import train as run_training

    result = run_training(cfg, resume=resume, overwrite=overwrite)
    out.print(result.report, markup=False, highlight=False, soft_wrap=True)
    out.print(f"run written to {result.run_dir}")
    for warning in result.record.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@app.command("eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    data: Annotated[Path, typer.Option(help="Labelled file to score the run on")],
    set_: SetOption = None,
    backend: Annotated[str, typer.Option(help="torch, onnx (int8 if exported) or onnx-fp32")
                       ] = "torch",
) -> None:
    """Score a trained run on any labelled file (read with the run's column mapping)."""
    quiet_libraries()
    from tunelab.api import evaluate as run_eval

    result, folder = run_eval(run, data, set_, backend)
    out.print(result.report, markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {folder}")


def _export_flags() -> type[BaseModel]:
    """Every registered exporter's options, as one set of flags (each exporter takes its own)."""
    from pydantic import create_model

    from tunelab.export.base import ExportOptions

    fields: dict[str, Any] = {}
    for name in registry.exporters.names():
        own = registry.exporters.get(name).Options.model_fields
        fields.update({key: (field.annotation, field) for key, field in own.items()
                       if key not in ExportOptions.model_fields})
    return create_model("ExportFlags", __base__=ExportOptions, **fields)


@app.command()
@options_from(_export_flags())
def export(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    options: BaseModel,
    format_: Annotated[str, typer.Option("--format", help="Exporter: " + ", ".join(
        registry.exporters.names()))] = "onnx",
) -> None:
    """Export a run for serving (ONNX: adapter merged, graph fused, int8), refused if it
    disagrees with PyTorch."""
    quiet_libraries()
    from tunelab.api import export as run_export

    exporter = registry.exporters.get(registry.exporters.check(format_))
    values = {k: v for k, v in options.model_dump().items() if k in exporter.Options.model_fields}
    report = run_export(run, format_, **values)
    out.print(exporter.markdown(report), markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {exporter.folder(Path(report['run']))}")


@app.command()
@options_from(CompressOptions)
def compress(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    options: CompressOptions | None = None,
) -> None:
    """Build int8, pruned and distilled variants of a run, measure them against it (metric,
    agreement, size, latency, throughput, cold start) and select the best within --max-drop;
    predict and serve then use it. Writes RUN/compress/ (report.md, pareto.png)."""
    quiet_libraries()
    from tunelab.api import compress as run_compress
    from tunelab.compress.report import markdown

    assert options is not None
    report = run_compress(run, **options.model_dump())
    out.print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {Path(report['run']) / 'compress'}")


@app.command()
@options_from(ServeSettings)
def serve(
    run: Annotated[Path | None, typer.Argument(help="Run directory, such as runs/demo "
                                               "(default: the production model)")] = None,
    options: ServeSettings | None = None,
) -> None:
    """Serve a run over HTTP: micro-batched predictions, API keys, limits, /metrics."""
    quiet_libraries()
    from tunelab.serving.server import serve as run_service

    assert options is not None
    run_service(options.model_copy(update={"run": run}))


TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson"}


def _read_inputs(path: Path, column: str | None, pair_column: str | None, run: Path
                 ) -> list[Any]:
    """Texts (or [first, second] pairs, for a pair model) from a prediction input file."""
    from tunelab.data.readers import read_table, read_text
    from tunelab.predictor import run_columns

    columns = run_columns(run)
    pair_name = pair_column or columns.get("text_pair_column")
    if path.suffix.lower() not in TABLE_SUFFIXES:  # plain text: one input per line
        if pair_name:
            raise DataError(f"{path}: this model takes text pairs; give a .csv, .tsv or "
                            f".jsonl file with columns '{column or columns['text_column']}' "
                            f"and '{pair_name}'")
        texts = [line for line in read_text(path).splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path}: no texts (the file is empty or blank); put one text "
                            "per line")
        return texts
    table = read_table(path)
    names = [column or columns["text_column"], *([pair_name] if pair_name else [])]
    for name in names:
        if name not in table.columns:
            flag = "--pair-column" if name == pair_name else "--text-column"
            raise DataError(f"{path}: no column '{name}'; the file has columns: "
                            f"{', '.join(table.columns)}; pass {flag}")
    rows = []
    for i, row in enumerate(table.rows):
        values = []
        for name in names:
            text, problem = cell_text(row.get(name))
            if problem:
                raise DataError(f"{table.where(i)}: column '{name}': {problem}; fix the row")
            values.append(text)
        rows.append(values if pair_name else values[0])
    return rows


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify")] = None,
    input_: Annotated[Path | None, typer.Option("--input", help=".txt (a text per line), "
                                                ".csv, .tsv or .jsonl")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSON lines here")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column of --input with the text")] = None,
    pair_column: Annotated[str | None, typer.Option(
        help="Column of --input with the second text, for a model trained on text pairs "
        "(default: the run's data.text_pair_column)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per model call")] = 64,
    backend: Annotated[str, typer.Option(help="auto (exported int8 ONNX if present, else "
                                         "torch), torch, onnx, onnx-fp32")] = "auto",
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="A request option of the run's task: --option KEY=VALUE (YAML "
        "value; repeatable)")] = None,
    labels: Annotated[str | None, typer.Option(
        help="Zero-shot runs: classify into these comma-separated labels instead")] = None,
) -> None:
    """Predict labels and per-class probabilities for texts or a file."""
    from tunelab.rundir import write_jsonl

    if not texts and input_ is None:
        raise TunelabError("give texts to classify, or --input FILE")
    if output is not None and output.is_dir():
        raise TunelabError(f"--output {output}: is a directory; give a file name, such as "
                           f"{output / 'predictions.jsonl'}")
    inputs: list[Any] = list(texts or [])
    if input_ is not None:
        inputs += _read_inputs(input_, text_column, pair_column, run)
    quiet_libraries()
    from tunelab.models import warn_if_unreadable
    from tunelab.predictor import Predictor  # not tunelab.api: that imports the trainer

    model = Predictor(run, backend)
    model.check_inputs(inputs)  # a clear error before the tokenizer sees a bad text
    warn_if_unreadable(model.tokenizer, [i if isinstance(i, str) else " ".join(i)
                                         for i in inputs], "the input",
                       str(model.meta.get("base_model")))
    options = _request_options(option or [])
    if labels is not None:
        options["labels"] = [label.strip() for label in labels.split(",") if label.strip()]
    request = model.request(options)
    predictions = model.predict(inputs, batch_size, **request.model_dump())
    rows = [{("pair" if isinstance(item, list) else "text"): item, **pred}
            for item, pred in zip(inputs, predictions, strict=True)]
    if output is not None:
        write_jsonl(output, rows)
        out.print(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


@app.command()
def suggest(
    run: Annotated[Path, typer.Argument(help="Run directory of a text classifier")],
    pool: Annotated[Path, typer.Option(help="Unlabelled texts: .txt (a text per line), "
                                       ".csv, .tsv or .jsonl")],
    n: Annotated[int, typer.Option(min=1, help="How many texts to suggest")] = 50,
    output: Annotated[Path | None, typer.Option(
        help="Write them as a CSV to label: text, an empty label column, the model's guess "
        "and its margin")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column of --pool with the text")] = None,
) -> None:
    """List the texts the model is least sure about, spread out by embedding, to label next
    (smallest margin between the two likeliest labels; farthest-first among them)."""
    from rich.table import Table

    from tunelab.active_learning import suggest as pick
    from tunelab.rundir import write_csv

    texts = _read_inputs(pool, text_column, None, run)
    quiet_libraries()
    picked = pick(run, texts, n)
    if output is not None:
        from tunelab.predictor import run_columns

        columns = run_columns(run)
        write_csv(output, [columns["text_column"], columns["label_column"], "suggested",
                             "margin"],
                    [[row["text"], "", row["suggested"], row["margin"]] for row in picked])
        out.print(f"wrote {len(picked)} texts to label to {output}: fill in the "
                  f"'{columns['label_column']}' column and add the rows to the training data")
        return
    table = Table("#", "margin", "model's guess", "text", title=f"{len(picked)} texts to "
                  f"label next, of {len(texts)}")
    for rank, row in enumerate(picked, 1):
        table.add_row(str(rank), f"{row['margin']:.3f}", row["suggested"], row["text"])
    out.print(table)


def _request_options(assignments: list[str]) -> dict[str, Any]:
    from tunelab.config import apply_override

    values: dict[str, Any] = {}
    for assignment in assignments:
        apply_override(values, assignment, "--option", "digits=2")
    return values


for group_name, group in cli_lifecycle.GROUPS.items():
    app.add_typer(group, name=group_name)
for command in (*cli_lifecycle.COMMANDS, *cli_trust.COMMANDS):
    app.command()(command)


# the `train` extra's import names (pyproject.toml): missing in a serving install
TRAINING_LIBRARIES = {"torch", "transformers", "peft", "accelerate", "datasets", "sklearn",
                      "matplotlib", "tensorboard", "seqeval", "sentence_transformers",
                      "setfit", "gguf", "onnx", "onnx_ir", "captum", "psutil"}


def main() -> None:
    """Typer handles its own usage errors (exit code 2, its usual few lines) and exits;
    tunelab's input errors become one line with their exit code."""
    # before a command imports transformers, which reads it once, at import
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app(prog_name="tunelab")
    except TunelabError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in TRAINING_LIBRARIES:
            raise
        err.print(f"error: this command needs the training libraries ({missing} is not "
                  "installed; this is a serving install); install them with: pip install "
                  "'tunelab[train]'", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
