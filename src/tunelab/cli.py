"""The `tunelab` command line: parse, call the API, print. Input errors exit with code 2."""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import typer

from tunelab import cli_lifecycle
from tunelab.console import err, out, quiet_libraries
from tunelab.data.text_checks import cell_text
from tunelab.errors import DataError, TunelabError

app = typer.Typer(no_args_is_help=True, add_completion=False,
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
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Write a commented example config."""
    from tunelab.rundir import write_text

    if path.exists() and not force:
        raise TunelabError(f"{path} already exists; pass --force to replace it")
    write_text(path, files("tunelab").joinpath("templates/config.yaml").read_text("utf-8"))
    out.print(f"wrote {path}; edit data.train, then run: tunelab train {path}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config (YAML)")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory")] = False,
) -> None:
    """Fine-tune a model as the config says, then print the evaluation report."""
    from tunelab.config import load_config

    cfg = load_config(config, set_)
    quiet_libraries()
    from tunelab.api import train as run_training

    result = run_training(cfg, resume=resume, overwrite=overwrite)
    out.print(result.report, markup=False, highlight=False, soft_wrap=True)
    out.print(f"run written to {result.run_dir}")


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


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    data: Annotated[Path | None, typer.Option(help="Labelled file for the agreement check "
                                              "(default: the run's test, else dev file)")] = None,
    quantize: Annotated[bool, typer.Option(help="Also write the int8 model")] = True,
    min_agreement: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.99,
    max_drop: Annotated[float, typer.Option(help="Largest metric drop allowed, in points")
                        ] = 1.0,
) -> None:
    """Export to ONNX (LoRA merged, graph fused) and int8; refuse if it disagrees with PyTorch."""
    quiet_libraries()
    from tunelab.api import export as run_export
    from tunelab.export.onnx import report_markdown

    report = run_export(run, data=data, quantize=quantize, min_agreement=min_agreement,
                        max_drop_points=max_drop)
    out.print(report_markdown(report), markup=False, highlight=False, soft_wrap=True)
    out.print(f"written to {Path(report['run']) / 'export'}")


@app.command()
def serve(
    run: Annotated[Path | None, typer.Argument(help="Run directory, such as runs/demo "
                                               "(default: the production model)")] = None,
    follow_production: Annotated[bool, typer.Option(
        help="Swap to each newly promoted model (`tunelab models promote`) without dropping "
        "requests")] = False,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Processes (each loads the model)")] = 1,
    backend: Annotated[str, typer.Option(help="auto (exported int8 ONNX if present, else "
                                         "torch), torch, onnx, onnx-fp32")] = "auto",
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys "
                                          "(local testing only)")] = False,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0.0)] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts per request")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters per text")] = 2000,
    rate_limit: Annotated[float, typer.Option(min=0.0, help="Requests/s per key and worker "
                                              "(0: off)")] = 100.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Texts waiting for the model; past "
                                           "it, 503 with Retry-After at once")] = 256,
    log_texts: Annotated[bool, typer.Option(help="Log raw request texts")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads per worker")
                       ] = None,
) -> None:
    """Serve a run over HTTP: micro-batched predictions, API keys, limits, /metrics."""
    quiet_libraries()
    import uvicorn

    from tunelab.predictor import exported_model, model_dir_of
    from tunelab.serving.app import SETTINGS_ENV, ServeSettings, create_app, settings_to_env
    from tunelab.serving.keys import LEGACY_KEYS_FILE, list_keys
    from tunelab.store.db import describe_database

    if run is None:
        from tunelab.store.records import production

        current = production()
        if current is None:
            raise TunelabError("no RUN given and no production model; give a run directory "
                               "or promote one with `tunelab models promote RUN`")
        run = Path(current.path)
    # clear errors before any worker starts: not a run, or no export for --backend onnx
    exported_model(model_dir_of(run).parent, backend)
    if not no_auth and not list_keys():
        legacy = (f"; import the old key file with `tunelab keys import {LEGACY_KEYS_FILE}`"
                  if LEGACY_KEYS_FILE.is_file() else "")
        raise TunelabError(f"no API keys in the store ({describe_database()}); create one "
                           "with `tunelab keys create --name NAME`, or pass --no-auth for "
                           f"local testing{legacy}")
    settings = ServeSettings(run=run, backend=backend, auth=not no_auth,
                             max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                             max_texts=max_texts, max_chars=max_chars, rate_limit=rate_limit,
                             rate_burst=max(1, int(rate_limit * 2)), max_queue=max_queue,
                             log_texts=log_texts,
                             threads=threads, follow_production=follow_production)
    common = {"host": host, "port": port, "log_level": "warning", "access_log": False,
              "timeout_graceful_shutdown": 30}
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        os.environ[SETTINGS_ENV] = settings_to_env(settings)
        uvicorn.run("tunelab.serving.app:app_from_env", factory=True, workers=workers, **common)


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
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    backend: Annotated[str, typer.Option(help="auto (exported int8 ONNX if present, else "
                                         "torch), torch, onnx, onnx-fp32")] = "auto",
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
    from tunelab.api import load
    from tunelab.models import warn_if_unreadable

    model = load(run, backend)
    model.check_inputs(inputs)  # a clear error before the tokenizer sees a bad text
    warn_if_unreadable(model.tokenizer, [i if isinstance(i, str) else " ".join(i)
                                         for i in inputs], "the input",
                       str(model.meta.get("base_model")))
    predictions = model.predict(inputs, batch_size=batch_size)
    rows = [{("pair" if isinstance(item, list) else "text"): item, **pred}
            for item, pred in zip(inputs, predictions, strict=True)]
    if output is not None:
        write_jsonl(output, rows)
        out.print(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


for group_name, group in cli_lifecycle.GROUPS.items():
    app.add_typer(group, name=group_name)
for command in cli_lifecycle.COMMANDS:
    app.command()(command)


def main() -> None:
    """Typer handles its own usage errors (exit code 2, its usual few lines) and exits;
    tunelab's input errors become one line with their exit code."""
    try:
        app(prog_name="tunelab")
    except TunelabError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
