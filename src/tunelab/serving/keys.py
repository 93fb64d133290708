"""API keys, kept in the project store. A key is shown once, at creation; the store keeps
only a salted SHA-256 of its secret. Keys are 256-bit random tokens, so a fast hash is safe
here (slow hashes are for guessable passwords) and checking one costs microseconds."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tunelab.errors import ConfigError, DataError
from tunelab.store.audit import log_event
from tunelab.store.db import session
from tunelab.store.schema import ApiKey, now

PREFIX = "tl"
LEGACY_KEYS_FILE = Path(".tunelab") / "keys.json"
log = logging.getLogger("tunelab.serve")


@dataclass(frozen=True)
class StoredKey:
    name: str
    key_id: str
    salt: str
    digest: str
    created: datetime


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _active(name: str | None = None) -> list[StoredKey]:
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id)
    if name is not None:
        query = query.where(ApiKey.name == name)
    with session() as s:
        return [StoredKey(k.name, k.key_id, k.salt, k.digest, k.created_at)
                for k in s.scalars(query)]


def create_key(name: str) -> str:
    """A new key for `name`; the only time its secret exists outside the caller."""
    if not name.strip():
        raise ConfigError("--name: give the key a non-empty name")
    if _active(name):
        raise ConfigError(f"a key named '{name}' already exists; choose another name or "
                          f"revoke it first (`tunelab keys revoke {name}`)")
    key_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_hex(8)
    try:
        with session() as s:
            s.add(ApiKey(key_id=key_id, name=name, salt=salt, digest=_digest(salt, secret)))
            log_event(s, "key.created", name, key_id=key_id)
    except IntegrityError:  # a concurrent create of the same name won the unique index
        raise ConfigError(f"a key named '{name}' already exists; choose another name or "
                          f"revoke it first (`tunelab keys revoke {name}`)") from None
    return f"{PREFIX}_{key_id}_{secret}"


def revoke_key(name: str) -> int:
    """Revoke every active key named `name`; returns how many."""
    with session() as s:
        found = list(s.scalars(select(ApiKey).where(ApiKey.name == name,
                                                    ApiKey.revoked_at.is_(None))))
        if not found:
            raise ConfigError(f"no active key named '{name}'; see `tunelab keys list`")
        for key in found:
            key.revoked_at = now()
            log_event(s, "key.revoked", name, key_id=key.key_id)
        return len(found)


def list_keys() -> list[StoredKey]:
    return _active()


def import_key_file(path: Path) -> list[str]:
    """Copy the hashed keys of a JSON key file (written by earlier tunelab versions) into
    the store; keys already there are skipped. Returns the names imported."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        keys = [(str(r["name"]), str(r["key_id"]), str(r["salt"]), str(r["digest"]))
                for r in rows]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a tunelab key file ({error})") from None
    imported = []
    with session() as s:
        known = set(s.scalars(select(ApiKey.key_id)))
        for name, key_id, salt, digest in keys:
            if key_id not in known:
                s.add(ApiKey(key_id=key_id, name=name, salt=salt, digest=digest))
                imported.append(name)
    return imported


class KeyCache:
    """The active keys as the service checks them: re-read from the store at most once per
    `every` seconds, so a revocation takes effect within a second without a query per
    request. If the store cannot be read, the keys last read stay in force."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.keys = {key.key_id: key for key in _active()}
        self.checked = time.monotonic()

    def refresh(self) -> None:
        current = time.monotonic()
        if current - self.checked < self.every:
            return
        self.checked = current
        try:
            self.keys = {key.key_id: key for key in _active()}
        except SQLAlchemyError as error:
            log.warning("could not re-read API keys from the store (%s); keeping the %d "
                        "read before", type(error).__name__, len(self.keys))

    def verify(self, presented: str | None) -> StoredKey | None:
        """The key's record, or None for a missing, malformed, revoked or wrong key."""
        self.refresh()
        if not presented:
            return None
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        stored = self.keys.get(key_id) if prefix == PREFIX else None
        if stored is None or not secret:
            return None
        return stored if hmac.compare_digest(stored.digest, _digest(stored.salt, secret)) else None
