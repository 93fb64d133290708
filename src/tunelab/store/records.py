"""What the CLI and the service ask of the store: record a run, find runs, and move model
versions between stages."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from tunelab.errors import ConfigError, TunelabError
from tunelab.record import RunRecord
from tunelab.store.audit import log_event
from tunelab.store.db import session
from tunelab.store.schema import DatasetFingerprint, Feedback, Metric, ModelVersion, Run, now


def record_run(run_dir: Path, record: RunRecord) -> int:
    """Store a finished run (replacing an earlier record of the same directory) and add a
    candidate model version; returns the run id."""
    path = str(Path(run_dir).resolve())
    with session() as s:
        old = s.scalar(select(Run).where(Run.path == path))
        if old is not None:
            s.delete(old)
            s.flush()
        run = Run(name=Path(run_dir).name, path=path, task=record.task,
                  base_model=record.model, method=record.method, metric=record.metric,
                  metric_value=record.metric_value, record_json=record.to_json())
        run.metrics = [Metric(split="test", name=k, value=float(v))
                       for k, v in record.test.items() if isinstance(v, int | float)]
        run.datasets = [DatasetFingerprint(split=split, sha256=digest,
                                           source=record.sources.get(split, ""))
                        for split, digest in record.fingerprints.items()]
        run.versions = [ModelVersion(stage="candidate")]
        s.add(run)
        s.flush()
        return run.id


def list_runs() -> list[tuple[Run, str]]:
    """Every run, newest first, with the stage of its model version."""
    with session() as s:
        runs = s.scalars(select(Run).options(selectinload(Run.versions))
                         .order_by(Run.created_at.desc(), Run.id.desc())).all()
        return [(run, run.versions[-1].stage if run.versions else "-") for run in runs]


def _find(s: Session, ref: str) -> Run:
    query = select(Run).options(selectinload(Run.versions), selectinload(Run.metrics))
    if ref.isdigit():
        found = s.scalar(query.where(Run.id == int(ref)))
    else:
        path = str(Path(ref).resolve())
        found = s.scalar(query.where(Run.path == path)) or s.scalars(
            query.where(Run.name == ref).order_by(Run.id.desc())).first()
    if found is None:
        raise ConfigError(f"no recorded run '{ref}'; give a run id, name or directory from "
                          "`tunelab runs list`")
    return found


def find_run(ref: str) -> Run:
    with session() as s:
        return _find(s, ref)


def production() -> Run | None:
    with session() as s:
        version = s.scalars(select(ModelVersion).where(ModelVersion.stage == "production")
                            .order_by(ModelVersion.promoted_at.desc())).first()
        return s.get(Run, version.run_id) if version else None


def promote(ref: str, force: bool = False) -> tuple[Run, Run | None]:
    """Make a run's model the production version; the previous one is archived.
    Returns (promoted, previous); previous is None when the run already was production.
    A run whose record has warnings (training did not work) needs `force`.
    A unique index allows one production version, so of two concurrent promotions one
    wins and the other fails with a clear error instead of leaving two."""
    try:
        with session() as s:
            run = _find(s, ref)
            warnings = run.record.warnings
            if warnings and not force:
                raise TunelabError(f"run '{run.name}' is not promoted: {warnings[0]}; promote "
                                   "it anyway with --force")
            version = run.versions[-1]
            if version.stage == "production":
                return run, None
            previous = None
            for current in s.scalars(select(ModelVersion)
                                     .where(ModelVersion.stage == "production")
                                     .with_for_update()):
                previous = s.get(Run, current.run_id)
                current.stage = "archived"
            s.flush()  # archive first: the index allows one production row at a time
            version.stage, version.promoted_at = "production", now()
            log_event(s, "model.promoted", run.path, run=run.name, forced=bool(warnings),
                      replaced=previous.name if previous else None)
            return run, previous
    except IntegrityError:
        raise ConfigError("another promotion happened at the same time; check "
                          "`tunelab runs list` and promote again if needed") from None


def rollback() -> tuple[Run, Run]:
    """Return production to the most recently archived version. (new, replaced)."""
    with session() as s:
        current = s.scalars(select(ModelVersion).where(ModelVersion.stage == "production")
                            .order_by(ModelVersion.promoted_at.desc())).first()
        if current is None:
            raise ConfigError("no production model to roll back; promote one with "
                              "`tunelab models promote RUN`")
        earlier = s.scalars(select(ModelVersion).where(
            ModelVersion.stage == "archived", ModelVersion.promoted_at.is_not(None),
            ModelVersion.id != current.id).order_by(ModelVersion.promoted_at.desc())).first()
        if earlier is None:
            raise ConfigError("no earlier production model to roll back to")
        current.stage = "archived"
        s.flush()  # the index allows one production row at a time
        earlier.stage, earlier.promoted_at = "production", now()
        restored, replaced = s.get(Run, earlier.run_id), s.get(Run, current.run_id)
        log_event(s, "model.rolled_back", restored.path, run=restored.name,
                  replaced=replaced.name)
        return restored, replaced


def add_feedback(run_dir: Path, model_version: str, text: str, correct_label: str,
                 predicted: str | None = None, request_id: str | None = None,
                 key_name: str | None = None) -> int:
    with session() as s:
        row = Feedback(run_path=str(Path(run_dir).resolve()), model_version=model_version,
                       text=text, predicted=predicted, correct_label=correct_label,
                       request_id=request_id, key_name=key_name)
        s.add(row)
        s.flush()
        return row.id


def feedback_rows(run_dir: Path | None = None) -> list[Feedback]:
    """Stored feedback, oldest first; only one run's when run_dir is given."""
    with session() as s:
        query = select(Feedback).order_by(Feedback.id)
        if run_dir is not None:
            query = query.where(Feedback.run_path == str(Path(run_dir).resolve()))
        return list(s.scalars(query))
