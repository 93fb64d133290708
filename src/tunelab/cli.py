"""The `tunelab` command line: parse, call the API, print. Input errors exit with code 2."""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tunelab.errors import DataError, TunelabError

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console()

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set training.lr=3e-5 (repeatable)"),
]


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    logging.set_verbosity_error()
    disable_progress_bars()  # weight loading/saving bars; the Trainer keeps its own
    logging.disable_progress_bar()


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
    _quiet_libraries()
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
    _quiet_libraries()
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
    _quiet_libraries()
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
    keys_file: Annotated[Path | None, typer.Option(help="API key store (default "
                                                   ".tunelab/keys.json)")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys "
                                          "(local testing only)")] = False,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0.0)] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts per request")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters per text")] = 2000,
    rate_limit: Annotated[float, typer.Option(min=0.0, help="Requests/s per key (0: off)")
                          ] = 100.0,
    log_texts: Annotated[bool, typer.Option(help="Log raw request texts")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads per worker")
                       ] = None,
) -> None:
    """Serve a run over HTTP: micro-batched predictions, API keys, limits, /metrics."""
    _quiet_libraries()
    import uvicorn

    from tunelab.predictor import exported_model, model_dir_of
    from tunelab.serving.app import SETTINGS_ENV, ServeSettings, create_app, settings_to_env
    from tunelab.serving.keys import KeyStore

    if run is None:
        from tunelab.store.records import production

        current = production()
        if current is None:
            raise TunelabError("no RUN given and no production model; give a run directory "
                               "or promote one with `tunelab models promote RUN`")
        run = Path(current.path)
    model_dir_of(run)  # a clear error before any worker starts
    exported_model(model_dir_of(run).parent, backend) if backend != "auto" else None
    store = KeyStore(keys_file)
    if not no_auth and not store.keys:
        raise TunelabError(f"{store.path}: no API keys; create one with `tunelab keys create "
                           "--name NAME`, or pass --no-auth for local testing")
    settings = ServeSettings(run=run, backend=backend, keys_file=keys_file, auth=not no_auth,
                             max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                             max_texts=max_texts, max_chars=max_chars, rate_limit=rate_limit,
                             rate_burst=max(1, int(rate_limit * 2)), log_texts=log_texts,
                             threads=threads, follow_production=follow_production)
    common = {"host": host, "port": port, "log_level": "warning", "access_log": False,
              "timeout_graceful_shutdown": 30}
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        os.environ[SETTINGS_ENV] = settings_to_env(settings)
        uvicorn.run("tunelab.serving.app:app_from_env", factory=True, workers=workers, **common)


keys_app = typer.Typer(help="API keys for `tunelab serve`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
KeysFile = Annotated[Path | None, typer.Option("--file", help="Key store (default "
                                               ".tunelab/keys.json)")]


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="Who or what uses the key")],
                file: KeysFile = None) -> None:
    """Create a key. It is printed once; only a salted hash is stored."""
    from tunelab.serving.keys import KeyStore

    store = KeyStore(file)
    key = store.create(name)
    err.print(f"key '{name}' stored (hashed) in {store.path}; copy it now, it is not shown "
              "again:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(file: KeysFile = None) -> None:
    """List key names and ids (never the keys)."""
    import time

    from tunelab.serving.keys import KeyStore

    for key in KeyStore(file).keys.values():
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(key.created))
        out.print(f"{key.name}\tid {key.key_id}\tcreated {created}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument()], file: KeysFile = None) -> None:
    """Delete a key; a running server refuses it within a second."""
    from tunelab.serving.keys import KeyStore

    KeyStore(file).revoke(name)
    out.print(f"revoked '{name}'")


runs_app = typer.Typer(help="Runs recorded in the project store.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions and their stage.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
RunRef = Annotated[str, typer.Argument(help="Run id, name or directory")]


@runs_app.command("list")
def runs_list() -> None:
    """Every recorded run, newest first."""
    from rich.table import Table

    from tunelab.store.records import list_runs

    table = Table("id", "name", "task", "method", "metric", "value", "stage", "created")
    for run, stage in list_runs():
        table.add_row(str(run.id), run.name, run.task, run.method, run.metric,
                      f"{run.metric_value:.4f}", stage, f"{run.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@runs_app.command("show")
def runs_show(run: RunRef) -> None:
    """A run's settings and test metrics."""
    from tunelab.store.records import find_run

    found = find_run(run)
    summary = found.summary
    out.print(f"run {found.id}: {found.name} ({found.path})", highlight=False)
    out.print(f"task {found.task}, model {found.base_model}, method {found.method}, lr "
              f"{summary.get('lr')}, {summary['train']['epochs']:.2f} epochs in "
              f"{summary['train']['seconds']:.0f} s", highlight=False)
    for name, value in summary["test"].items():
        out.print(f"  {name:<20} {value:.4f}" if isinstance(value, float) else
                  f"  {name:<20} {value}", highlight=False)


@runs_app.command("compare")
def runs_compare(a: RunRef, b: RunRef) -> None:
    """Test metrics of run B against run A, and the per-class F1 change."""
    from rich.table import Table

    from tunelab.store.records import find_run

    first, second = find_run(a), find_run(b)
    table = Table("metric", first.name, second.name, "change")
    for name, value in first.summary["test"].items():
        other = second.summary["test"].get(name)
        if isinstance(value, float) and isinstance(other, float):
            table.add_row(name, f"{value:.4f}", f"{other:.4f}", f"{other - value:+.4f}")
    out.print(table)
    before = first.summary.get("per_class_f1", {})
    after = second.summary.get("per_class_f1", {})
    rows = sorted(((label, before.get(label), after.get(label)) for label in
                   dict.fromkeys([*before, *after])),
                  key=lambda row: -abs((row[2] or 0.0) - (row[1] or 0.0)))
    classes = Table("class", f"F1 {first.name}", f"F1 {second.name}", "change")
    for label, x, y in rows:
        change = f"{y - x:+.4f}" if x is not None and y is not None else "new" if x is None \
            else "gone"
        classes.add_row(label, "-" if x is None else f"{x:.4f}", "-" if y is None else
                        f"{y:.4f}", change)
    out.print(classes)


feedback_app = typer.Typer(help="Corrections sent to the service.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    output: Annotated[Path, typer.Option(help="CSV file to write (text,label)")],
    run: Annotated[Path | None, typer.Option(help="Only feedback on this run's model")] = None,
) -> None:
    """Write stored feedback as a labelled dataset (CSV with the run's column names)."""
    import csv
    import io

    from tunelab.rundir import write_text
    from tunelab.store.records import feedback_rows

    rows = feedback_rows(run)
    if not rows:
        raise TunelabError("no feedback stored" + (f" for {run}" if run else "") +
                           "; send corrections to POST /v1/feedback first")
    columns = {"text_column": "text", "label_column": "label"}
    if run is not None:  # the run's own column names, so the file trains it as it is
        from tunelab.config import read_yaml
        from tunelab.predictor import model_dir_of

        config = model_dir_of(run).parent / "config.yaml"
        data = read_yaml(config).get("data", {}) if config.is_file() else {}
        columns = {k: str(data.get(k, v)) for k, v in columns.items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([columns["text_column"], columns["label_column"], "predicted",
                     "model_version", "created_at"])
    for row in rows:
        writer.writerow([row.text, row.correct_label, row.predicted or "", row.model_version,
                         row.created_at.isoformat()])
    write_text(output, buffer.getvalue())
    out.print(f"wrote {len(rows)} examples to {output}")


@app.command()
def monitor(
    run: Annotated[Path, typer.Argument(help="The run being served (its held-out predictions "
                                        "are the reference)")],
    url: Annotated[str, typer.Option(help="Base URL of `tunelab serve`")] =
    "http://127.0.0.1:8000",
    key: Annotated[str | None, typer.Option(envvar="TUNELAB_API_KEY",
                                            help="API key (or TUNELAB_API_KEY)")] = None,
    threshold: Annotated[float, typer.Option(help="PSI that counts as drift")] = 0.2,
    min_predictions: Annotated[int, typer.Option(help="Fewer served predictions than this "
                                                 "are not judged")] = 100,
    webhook: Annotated[str | None, typer.Option(help="POST the report here on drift "
                                                "(localhost only)")] = None,
) -> None:
    """Compare the served prediction distribution with the run's held-out one (PSI). Exits 3
    on drift, for cron; logs an alert line and calls the webhook if given."""
    import httpx

    from tunelab.monitoring.drift import compare, summarise
    from tunelab.predictor import model_dir_of

    reference_file = model_dir_of(run).parent / "predictions.jsonl"
    if not reference_file.is_file():
        raise TunelabError(f"{reference_file}: missing; monitor needs a run written by "
                           "`tunelab train`")
    reference = summarise(json.loads(line) for line in
                          reference_file.read_text(encoding="utf-8").splitlines() if line)
    if not reference["labels"]:
        raise TunelabError(f"{run}: monitor compares single-label predictions; this run has "
                           "none")
    if webhook and httpx.URL(webhook).host not in ("127.0.0.1", "localhost", "::1"):
        raise TunelabError(f"--webhook {webhook}: only localhost webhooks are allowed")
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/monitor", timeout=10,
                             headers={"Authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError as error:
        raise TunelabError(f"{url}: cannot reach the service ({error}); is `tunelab serve` "
                           "running?") from None
    if response.status_code != 200:
        raise TunelabError(f"{url}/v1/monitor answered {response.status_code}: "
                           f"{response.text[:200]}; check --key")
    report = compare(reference, response.json())
    out.print(f"reference: {report.n_reference} held-out predictions of {run}; served: "
              f"{report.n_current} recent predictions")
    out.print(f"PSI labels {report.label_psi:.3f}, confidence {report.confidence_psi:.3f} "
              f"(threshold {threshold})")
    for label, before, now, term in report.per_label[:10]:
        out.print(f"  {label:<30} {before:7.1%} -> {now:7.1%}   PSI {term:+.3f}")
    if report.n_current < min_predictions:
        out.print(f"too few served predictions to judge (< {min_predictions})")
        return
    if report.psi > threshold:
        from tunelab.serving.observability import json_logger

        alert = {"run": str(run), "psi_labels": round(report.label_psi, 4),
                 "psi_confidence": round(report.confidence_psi, 4), "threshold": threshold,
                 "top_shifts": [row[0] for row in report.per_label[:5]]}
        json_logger("tunelab.monitor").warning("drift", extra={"fields": alert})
        if webhook:
            httpx.post(webhook, json=alert, timeout=10)
        raise typer.Exit(3)
    out.print("no drift")


@app.command()
def retrain(
    run: Annotated[Path, typer.Argument(help="The run to continue (a full fine-tuning run)")],
    data: Annotated[Path | None, typer.Option(help="New labelled examples (the run's "
                                              "columns)")] = None,
    feedback: Annotated[bool, typer.Option(help="Use the feedback stored for this run")
                        ] = False,
    rehearsal: Annotated[float, typer.Option(min=0.0, help="Original examples rehearsed per "
                                             "new training example")] = 1.0,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share of the new "
                                           "examples held back to score the result")] = 0.2,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Points the original test metric "
                                             "may drop before promotion is refused")] = 1.0,
    without_rehearsal: Annotated[bool, typer.Option(help="Also train without rehearsal, to "
                                                    "show the forgetting")] = False,
    epochs: Annotated[float, typer.Option(min=0.1)] = 3.0,
    lr: Annotated[float | None, typer.Option(help="Default: the run's")] = None,
    name: Annotated[str | None, typer.Option(help="New run name")] = None,
    promote: Annotated[bool, typer.Option(help="Promote when the gate passes")] = True,
) -> None:
    """Fine-tune a run on new examples plus rehearsal of its original data; promote it only
    if the original test metric holds and the new examples improve."""
    _quiet_libraries()
    from tunelab.retrain import RetrainOptions
    from tunelab.retrain import retrain as run_retrain

    result = run_retrain(run, RetrainOptions(
        data=data, feedback=feedback, rehearsal=rehearsal, holdout=holdout,
        tolerance=tolerance, without_rehearsal=without_rehearsal, epochs=epochs, lr=lr,
        name=name, promote=promote))
    out.print((result.run_dir / "retrain.md").read_text(encoding="utf-8"), markup=False,
              highlight=False)
    out.print(f"written to {result.run_dir}")


@models_app.command("promote")
def models_promote(run: RunRef) -> None:
    """Make a run's model the production version (the previous one is archived)."""
    from tunelab.store.records import promote

    promoted, previous = promote(run)
    out.print(f"production: {promoted.name} (run {promoted.id})"
              + (f"; archived {previous.name} (run {previous.id})" if previous else ""))


@models_app.command("rollback")
def models_rollback() -> None:
    """Put the previous production version back."""
    from tunelab.store.records import rollback

    restored, replaced = rollback()
    out.print(f"production: {restored.name} (run {restored.id}); archived {replaced.name} "
              f"(run {replaced.id})")


TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson"}


def _read_inputs(path: Path, column: str | None, run: Path) -> list[str]:
    from tunelab.data.readers import read_table, read_text
    from tunelab.predictor import run_text_column

    if path.suffix.lower() not in TABLE_SUFFIXES:  # plain text: one input per line
        return [line for line in read_text(path).splitlines() if line.strip()]
    table = read_table(path)
    name = column or run_text_column(run)
    if name not in table.columns:
        raise DataError(f"{path}: no column '{name}'; the file has columns: "
                        f"{', '.join(table.columns)}; pass --text-column")
    texts = [str(row.get(name) or "") for row in table.rows]
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"{table.where(i)}: empty text in column '{name}'; fill it in")
    return texts


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify")] = None,
    input_: Annotated[Path | None, typer.Option("--input", help=".txt (a text per line), "
                                                ".csv, .tsv or .jsonl")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSON lines here")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column of --input with the text")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    backend: Annotated[str, typer.Option(help="auto (exported int8 ONNX if present, else "
                                         "torch), torch, onnx, onnx-fp32")] = "auto",
) -> None:
    """Predict labels and per-class probabilities for texts or a file."""
    from tunelab.rundir import write_jsonl

    if not texts and input_ is None:
        raise TunelabError("give texts to classify, or --input FILE")
    inputs = list(texts or []) + (_read_inputs(input_, text_column, run) if input_ else [])
    _quiet_libraries()
    from tunelab.api import load

    predictions = load(run, backend).predict(inputs, batch_size=batch_size)
    rows = [{"text": text, **pred} for text, pred in zip(inputs, predictions, strict=True)]
    if output is not None:
        write_jsonl(output, rows)
        out.print(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    try:
        code = app(standalone_mode=False)  # a typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except TunelabError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
