"""Commands for a model's life after training: API keys, the run store and model stages,
feedback, drift monitoring and retraining. `tunelab.cli` mounts them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_options import options_from
from tunelab.console import err, out, quiet_libraries
from tunelab.lifecycle_options import MonitorOptions, RetrainOptions
from tunelab.record import RunRecord

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
    record = found.record
    out.print(f"run {found.id}: {found.name} ({found.path})", highlight=False)
    out.print(f"task {found.task}, model {found.base_model}, method {found.method}, lr "
              f"{record.lr}, {record.train.epochs:.2f} epochs in "
              f"{record.train.seconds:.0f} s", highlight=False)
    for name, value in record.test.items():
        out.print(f"  {name:<20} {value:.4f}" if isinstance(value, float) else
                  f"  {name:<20} {value}", highlight=False)


@runs_app.command("compare")
def runs_compare(a: RunRef, b: RunRef) -> None:
    """Test metrics of run B against run A, and the per-class F1 change, in points."""
    from rich.table import Table

    from tunelab.store.records import find_run

    first, second = find_run(a), find_run(b)
    before, after = first.record, second.record
    for warning in comparability(before, after):
        err.print(f"warning: {warning}", highlight=False)
    table = Table("metric", first.name, second.name, "change (points)")
    for name, value in before.test.items():
        other = after.test.get(name)
        if isinstance(value, float) and isinstance(other, float):
            table.add_row(name, f"{value:.4f}", f"{other:.4f}", f"{100 * (other - value):+.2f}p")
    out.print(table)
    rows = sorted(((label, before.per_class_f1.get(label), after.per_class_f1.get(label))
                   for label in dict.fromkeys([*before.per_class_f1, *after.per_class_f1])),
                  key=lambda row: -abs((row[2] or 0.0) - (row[1] or 0.0)))
    classes = Table("class", f"F1 {first.name}", f"F1 {second.name}", "change (points)")
    for label, x, y in rows:
        change = f"{100 * (y - x):+.2f}p" if x is not None and y is not None else "new" \
            if x is None else "gone"
        classes.add_row(label, "-" if x is None else f"{x:.4f}", "-" if y is None else
                        f"{y:.4f}", change)
    out.print(classes)


def comparability(before: RunRecord, after: RunRecord) -> list[str]:
    """Why the two runs' scores may not be comparable, if they may not."""
    warnings = []
    if before.task != after.task:
        warnings.append(f"the runs are different tasks ({before.task}, {after.task}); their "
                        "metrics do not measure the same thing")
    tests = [(r.fingerprints.get("test") or r.sources.get("test")) for r in (before, after)]
    if tests[0] != tests[1]:
        warnings.append(f"the runs were tested on different data ({before.sources.get('test')}"
                        f", {after.sources.get('test')}, or the same file changed): the "
                        "change mixes the models with the data; compare them on one file "
                        "with `tunelab eval RUN --data FILE`")
    return warnings


feedback_app = typer.Typer(help="Corrections sent to the service.", no_args_is_help=True)


@feedback_app.command("export")
def feedback_export(
    output: Annotated[Path, typer.Option(help="CSV file to write (text,label)")],
    run: Annotated[Path | None, typer.Option(help="Only feedback on this run's model")] = None,
) -> None:
    """Write stored feedback as a labelled dataset (CSV with the run's column names)."""
    from tunelab.lifecycle import export_feedback

    count = export_feedback(output, run)
    out.print(f"wrote {count} examples to {output}")


@options_from(MonitorOptions)
def monitor(
    run: Annotated[Path, typer.Argument(help="The run being served (its held-out predictions "
                                        "are the reference)")],
    options: MonitorOptions,
) -> None:
    """Compare the served prediction distribution with the run's held-out one (PSI). Exits 3
    on drift, for cron; logs an alert line and calls the webhook if given."""
    from tunelab.lifecycle import check_drift

    check = check_drift(run, options)
    report = check.report
    out.print(f"reference: {report.n_reference} held-out predictions of {run}; served: "
              f"{report.n_current} recent predictions")
    out.print(f"PSI labels {report.label_psi:.3f}, confidence {report.confidence_psi:.3f} "
              f"(threshold {options.threshold})")
    for label, before, now, term in report.per_label[:10]:
        out.print(f"  {label:<30} {before:7.1%} -> {now:7.1%}   PSI {term:+.3f}")
    if not check.judged:
        out.print(f"too few served predictions to judge (< {options.min_predictions})")
        return
    if check.drift:
        if check.webhook_error:
            err.print(f"warning: webhook {options.webhook} failed ({check.webhook_error}); "
                      "drift is still reported by the exit code", markup=False,
                      highlight=False)
        raise typer.Exit(3)
    out.print("no drift")


@options_from(RetrainOptions)
def retrain(
    run: Annotated[Path, typer.Argument(help="The run to continue (a full fine-tuning run)")],
    options: RetrainOptions,
) -> None:
    """Fine-tune a run on new examples plus rehearsal of its original data; promote it only
    if the original test metric holds and the new examples improve."""
    quiet_libraries()
    from tunelab.retrain import retrain as run_retrain

    result = run_retrain(run, options)
    out.print((result.run_dir / "retrain.md").read_text(encoding="utf-8"), markup=False,
              highlight=False)
    out.print(f"written to {result.run_dir}")


@models_app.command("list")
def models_list() -> None:
    """Recorded runs with the stage of their model (production, candidate, archived)."""
    runs_list()


@models_app.command("promote")
def models_promote(run: RunRef, force: Annotated[bool, typer.Option(
        "--force", help="Promote even a run whose training did not work (its warnings)")
                   ] = False) -> None:
    """Make a run's model the production version (the previous one is archived)."""
    from tunelab.lifecycle import promote

    promoted, previous = promote(run, force)
    out.print(f"production: {promoted.name} (run {promoted.id})"
              + (f"; archived {previous.name} (run {previous.id})" if previous else ""))


@models_app.command("rollback")
def models_rollback() -> None:
    """Put the previous production version back."""
    from tunelab.lifecycle import rollback

    restored, replaced = rollback()
    out.print(f"production: {restored.name} (run {restored.id}); archived {replaced.name} "
              f"(run {replaced.id})")


GROUPS = {"keys": keys_app, "runs": runs_app, "models": models_app, "feedback": feedback_app}
COMMANDS = (monitor, retrain)
