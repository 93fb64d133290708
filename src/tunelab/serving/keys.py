"""API keys. A key is shown once, at creation; the store keeps only a salted SHA-256 of
its secret. Keys are 256-bit random tokens, so a fast hash is safe here (slow hashes are
for guessable passwords) and checking one costs microseconds per request."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import ConfigError
from tunelab.rundir import write_json

DEFAULT_KEYS_FILE = Path(".tunelab") / "keys.json"
PREFIX = "tl"


@dataclass
class StoredKey:
    name: str
    key_id: str
    salt: str
    digest: str
    created: float


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def keys_file(path: Path | None = None) -> Path:
    return path or Path(os.environ.get("TUNELAB_KEYS_FILE", DEFAULT_KEYS_FILE))


class KeyStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = keys_file(path)
        self.keys: dict[str, StoredKey] = {}
        self.loaded_mtime = 0.0
        self.checked = 0.0
        self._load()

    def _load(self) -> None:
        if self.path.is_file():
            self.loaded_mtime = self.path.stat().st_mtime
            try:
                rows = json.loads(self.path.read_text(encoding="utf-8"))
                self.keys = {row["key_id"]: StoredKey(**row) for row in rows}
            except (ValueError, KeyError, TypeError) as error:
                raise ConfigError(f"{self.path}: not a tunelab key file ({error}); restore it "
                                  "or delete it and create new keys") from None

    def _save(self) -> None:
        write_json(self.path, [asdict(k) for k in self.keys.values()])
        os.chmod(self.path, 0o600)

    def create(self, name: str) -> str:
        if not name.strip():
            raise ConfigError("--name: give the key a non-empty name")
        if any(k.name == name for k in self.keys.values()):
            raise ConfigError(f"a key named '{name}' already exists in {self.path}; choose "
                              "another name or revoke it first")
        key_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_hex(8)
        self.keys[key_id] = StoredKey(name, key_id, salt, _digest(salt, secret), time.time())
        self._save()
        return f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, name: str) -> None:
        found = [k for k, v in self.keys.items() if v.name == name]
        if not found:
            raise ConfigError(f"no key named '{name}' in {self.path}")
        for key_id in found:
            del self.keys[key_id]
        self._save()

    def refresh(self, every: float = 1.0) -> None:
        """Pick up keys created or revoked since loading; stats the file at most once per
        `every` seconds."""
        now = time.monotonic()
        if now - self.checked < every:
            return
        self.checked = now
        mtime = self.path.stat().st_mtime if self.path.is_file() else 0.0
        if mtime != self.loaded_mtime:
            previous = self.keys
            self.keys = {}
            try:
                self._load()
            except ConfigError:  # a half-edited file: keep serving the keys we had
                self.keys = previous
            self.loaded_mtime = mtime

    def verify(self, presented: str | None) -> StoredKey | None:
        """The key's record, or None for a missing, malformed or wrong key."""
        self.refresh()
        if not presented:
            return None
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        stored = self.keys.get(key_id) if prefix == PREFIX else None
        if stored is None or not secret:
            return None
        return stored if hmac.compare_digest(stored.digest, _digest(stored.salt, secret)) else None
