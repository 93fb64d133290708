"""A model's life after training, as functions of the Python API: promotion and rollback,
feedback as a dataset, drift checks against a running service, and retraining
(`tunelab.retrain`). The CLI and the service call these and print or answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.lifecycle_options import MonitorOptions


def promote(run: str | Path, force: bool = False) -> tuple[Any, Any]:
    """Make a run's model the production version; returns (promoted, archived or None).
    A run whose training did not work (its record's warnings) needs `force`."""
    from tunelab.store.records import promote as promote_run

    return promote_run(str(run), force)


def rollback() -> tuple[Any, Any]:
    """Put the previous production version back; returns (restored, replaced)."""
    from tunelab.store.records import rollback as roll_back

    return roll_back()


def export_feedback(output: Path, run: Path | None = None) -> int:
    """Write stored feedback as a labelled CSV (with the run's column names when `run` is
    given, so the file trains it as it is); returns the number of rows."""
    from tunelab.predictor import run_columns
    from tunelab.rundir import write_csv
    from tunelab.store.records import feedback_rows

    rows = feedback_rows(run)
    if not rows:
        raise TunelabError("no feedback stored" + (f" for {run}" if run else "") +
                           "; send corrections to POST /v1/feedback first")
    columns = run_columns(run) if run is not None else {"text_column": "text",
                                                         "label_column": "label"}
    write_csv(output, [columns["text_column"], columns["label_column"], "predicted",
                       "model_version", "created_at"],
              ([row.text, row.correct_label, row.predicted or "", row.model_version,
                row.created_at.isoformat()] for row in rows))
    return len(rows)


@dataclass
class DriftCheck:
    report: Any  # monitoring.drift.DriftReport
    judged: bool  # enough served predictions to judge
    drift: bool
    webhook_error: str | None = None


def check_drift(run: Path, options: MonitorOptions) -> DriftCheck:
    """Compare the service's recent predictions with the run's held-out ones (PSI). On
    drift, log an alert line and POST it to the (localhost) webhook if one is given."""
    import httpx

    from tunelab.monitoring.drift import compare, count_predictions
    from tunelab.predictor import model_dir_of

    reference_file = model_dir_of(run).parent / "predictions.jsonl"
    if not reference_file.is_file():
        raise TunelabError(f"{reference_file}: missing; monitor needs a run written by "
                           "`tunelab train`")
    reference = count_predictions(json.loads(line) for line in
                                  reference_file.read_text(encoding="utf-8").splitlines()
                                  if line)
    if not reference["labels"]:
        raise TunelabError(f"{run}: monitor compares single-label predictions; this run has "
                           "none")
    webhook = options.webhook
    if webhook and httpx.URL(webhook).host not in ("127.0.0.1", "localhost", "::1"):
        raise TunelabError(f"--webhook {webhook}: only localhost webhooks are allowed")
    url = options.url.rstrip("/")
    try:
        response = httpx.get(f"{url}/v1/monitor", timeout=10, headers=(
            {"Authorization": f"Bearer {options.key}"} if options.key else {}))
    except httpx.HTTPError as error:
        raise TunelabError(f"{options.url}: cannot reach the service ({error}); is `tunelab "
                           "serve` running?") from None
    if response.status_code != 200:
        raise TunelabError(f"{url}/v1/monitor answered {response.status_code}: "
                           f"{response.text[:200]}; check --key")
    report = compare(reference, response.json())
    if report.n_current < options.min_predictions:
        return DriftCheck(report, judged=False, drift=False)
    if report.psi <= options.threshold:
        return DriftCheck(report, judged=True, drift=False)
    from tunelab.json_logs import json_logger

    alert = {"run": str(run), "psi_labels": round(report.label_psi, 4),
             "psi_confidence": round(report.confidence_psi, 4),
             "threshold": options.threshold,
             "top_shifts": [row[0] for row in report.per_label[:5]]}
    json_logger("tunelab.monitor").warning("drift", extra={"fields": alert})
    failed = None
    if webhook:
        try:
            httpx.post(webhook, json=alert, timeout=10).raise_for_status()
        except httpx.HTTPError as error:  # the drift verdict stands without the webhook
            failed = str(error)
    return DriftCheck(report, judged=True, drift=True, webhook_error=failed)
