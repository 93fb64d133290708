"""The audit log: each change is written in the same transaction as the change itself, so
the log cannot miss one that happened or show one that did not."""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunelab.store.db import session
from tunelab.store.schema import AuditEvent

ACTIONS = ("key.created", "key.revoked", "model.promoted", "model.rolled_back",
           "retrain.started")


def actor() -> str:
    """Who acts: TUNELAB_ACTOR if set (a CI job, a service account), else the OS user."""
    found = os.environ.get("TUNELAB_ACTOR")
    if found:
        return found
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return f"uid {os.getuid()}"


def log_event(s: Session, action: str, target: str, **detail: Any) -> None:
    s.add(AuditEvent(actor=actor(), action=action, target=target, detail=detail or None))


def record_event(action: str, target: str, **detail: Any) -> None:
    with session() as s:
        log_event(s, action, target, **detail)


def audit_events(limit: int = 100, action: str | None = None) -> list[AuditEvent]:
    """The newest `limit` events, oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with session() as s:
        return list(reversed(s.scalars(query).all()))
