"""Commands for a model's life after training: API keys, the run store and model stages,
feedback, drift monitoring and retraining. `tunelab.cli` mounts them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tunelab.console import err, out, quiet_libraries
from tunelab.errors import TunelabError

keys_app = typer.Typer(help="API keys for `tunelab serve`, kept hashed in the project store.",
                       no_args_is_help=True)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="Who or what uses the key")]) -> None:
    """Create a key. It is printed once; only a salted hash is stored."""
    from tunelab.serving.keys import create_key
    from tunelab.store.db import describe_database

    key = create_key(name)
    err.print(f"key '{name}' stored (hashed) in {describe_database()}; copy it now, it is not "
              "shown again:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list() -> None:
    """List active key names and ids (never the keys)."""
    from tunelab.serving.keys import list_keys
    from tunelab.store.db import describe_database

    keys = list_keys()
    if not keys:
        out.print(f"no active keys in {describe_database()}; create one with `tunelab keys "
                  "create --name NAME`", highlight=False)
    for key in keys:
        out.print(f"{key.name}\tid {key.key_id}\tcreated {key.created:%Y-%m-%d %H:%M}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key; a running server refuses it within a second."""
    from tunelab.serving.keys import revoke_key

    revoke_key(name)
    out.print(f"revoked '{name}'")


@keys_app.command("import")
def keys_import(file: Annotated[Path, typer.Argument(help="A keys.json written by an "
                                                     "earlier tunelab")]) -> None:
    """Move hashed keys from an old JSON key file into the store; the keys keep working."""
    from tunelab.serving.keys import import_key_file

    names = import_key_file(file)
    out.print(f"imported {len(names)} key(s){': ' + ', '.join(names) if names else ''}; "
              f"{file} can now be deleted")


runs_app = typer.Typer(help="Runs recorded in the project store.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions and their stage.", no_args_is_help=True)
RunRef = Annotated[str, typer.Argument(help="Run id, name or directory")]


@runs_app.command("list")
def runs_list() -> None:
    """Every recorded run, newest first."""
    from rich.table import Table

    from tunelab.store.db import describe_database
    from tunelab.store.records import list_runs

    runs = list_runs()
    if not runs:
        out.print(f"no runs recorded in {describe_database()}; `tunelab train CONFIG` "
                  "records each run", highlight=False)
        return
    table = Table("id", "name", "task", "method", "metric", "value", "stage", "created")
    for run, stage in runs:
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


@feedback_app.command("export")
def feedback_export(
    output: Annotated[Path, typer.Option(help="CSV file to write (text,label)")],
    run: Annotated[Path | None, typer.Option(help="Only feedback on this run's model")] = None,
) -> None:
    """Write stored feedback as a labelled dataset (CSV with the run's column names)."""
    from tunelab.rundir import write_csv
    from tunelab.store.records import feedback_rows

    rows = feedback_rows(run)
    if not rows:
        raise TunelabError("no feedback stored" + (f" for {run}" if run else "") +
                           "; send corrections to POST /v1/feedback first")
    columns = {"text_column": "text", "label_column": "label"}
    if run is not None:  # the run's own column names, so the file trains it as it is
        from tunelab.predictor import run_columns

        columns = run_columns(run)
    write_csv(output, [columns["text_column"], columns["label_column"], "predicted",
                       "model_version", "created_at"],
              ([row.text, row.correct_label, row.predicted or "", row.model_version,
                row.created_at.isoformat()] for row in rows))
    out.print(f"wrote {len(rows)} examples to {output}")


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
            try:
                httpx.post(webhook, json=alert, timeout=10).raise_for_status()
            except httpx.HTTPError as error:  # the drift verdict stands without the webhook
                err.print(f"warning: webhook {webhook} failed ({error}); drift is still "
                          "reported by the exit code", markup=False, highlight=False)
        raise typer.Exit(3)
    out.print("no drift")


def retrain(
    run: Annotated[Path, typer.Argument(help="The run to continue (a full fine-tuning run)")],
    data: Annotated[Path | None, typer.Option(help="New labelled examples (the run's "
                                              "columns)")] = None,
    feedback: Annotated[bool, typer.Option(help="Use the feedback stored for this run")
                        ] = False,
    rehearsal: Annotated[float, typer.Option(min=0.0, help="Original examples rehearsed per "
                                             "new training example")] = 3.0,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share of the new "
                                           "examples held back to score the result")] = 0.2,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Points the original test metric "
                                             "may drop before promotion is refused")] = 1.0,
    without_rehearsal: Annotated[bool, typer.Option(help="Also train without rehearsal, to "
                                                    "show the forgetting")] = False,
    epochs: Annotated[float, typer.Option(min=0.1)] = 3.0,
    lr: Annotated[float | None, typer.Option(help="Default: the run's")] = None,
    name: Annotated[str | None, typer.Option(help="New run name (default: RUN-retrain)")
                    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier retrain of that name "
                                            "(never the production model)")] = False,
    promote: Annotated[bool, typer.Option(help="Promote when the gate passes")] = True,
) -> None:
    """Fine-tune a run on new examples plus rehearsal of its original data; promote it only
    if the original test metric holds and the new examples improve."""
    quiet_libraries()
    from tunelab.retrain import RetrainOptions
    from tunelab.retrain import retrain as run_retrain

    result = run_retrain(run, RetrainOptions(
        data=data, feedback=feedback, rehearsal=rehearsal, holdout=holdout,
        tolerance=tolerance, without_rehearsal=without_rehearsal, epochs=epochs, lr=lr,
        name=name, overwrite=overwrite, promote=promote))
    out.print((result.run_dir / "retrain.md").read_text(encoding="utf-8"), markup=False,
              highlight=False)
    out.print(f"written to {result.run_dir}")


@models_app.command("list")
def models_list() -> None:
    """Recorded runs with the stage of their model (production, candidate, archived)."""
    runs_list()


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


GROUPS = {"keys": keys_app, "runs": runs_app, "models": models_app, "feedback": feedback_app}
COMMANDS = (monitor, retrain)
