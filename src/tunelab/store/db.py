"""Engine and sessions for the store, and schema migration to the newest version."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tunelab.errors import ConfigError

PROJECT_FOLDER = ".tunelab"
DB_FILE = "tunelab.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x7475_6E65  # "tune": the advisory lock that serialises migrations


def store_folder() -> tuple[Path, str]:
    """Where the SQLite store lives, and why there. As git finds its repository: the
    nearest `.tunelab/` from the current folder upwards, then `TUNELAB_HOME`, then the
    user's data folder, so that a command run from a subfolder sees the project's runs."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FOLDER).is_dir():
            return folder / PROJECT_FOLDER, "project store"
    home = os.environ.get("TUNELAB_HOME")
    if home:
        return Path(home).expanduser().resolve(), "store in TUNELAB_HOME"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tunelab", "user-level store (no .tunelab/ above this folder)"


def database_url() -> str:
    url = os.environ.get("TUNELAB_DB_URL")
    if url:
        return url
    folder, why = store_folder()
    path = folder / DB_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        logging.getLogger("tunelab").warning(
            "created the %s at %s (`tunelab init` makes a .tunelab/ for a project; "
            "TUNELAB_DB_URL or TUNELAB_HOME choose another)", why, path)
    return f"sqlite:///{path}"


def describe_database() -> str:
    """The store's URL for messages, without its password."""
    return make_url(database_url()).render_as_string(hide_password=True)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    # WAL: readers never block the writer, and two processes can record at once
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN is not JSON, and PostgreSQL's json type refuses it
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _json_serializer(value: Any) -> str:
    return json.dumps(_json_safe(value), default=str)


@cache
def engine_for(url: str) -> Engine:
    """The engine for a store URL, its schema migrated. Bad URLs, missing drivers and
    unreachable servers become one-line errors that name TUNELAB_DB_URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"TUNELAB_DB_URL: '{url}' is not a database URL; use "
                          "sqlite:///PATH or postgresql://USER@HOST/DB") from None
    if parsed.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=True, json_serializer=_json_serializer)
    except ModuleNotFoundError as missing:
        raise ConfigError(f"TUNELAB_DB_URL: the driver for {shown} is not installed "
                          f"({missing.name}); for PostgreSQL, pip install 'tunelab[postgres]'"
                          ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        _create_private(parsed.database)
    try:
        migrate(engine)
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise ConfigError(f"TUNELAB_DB_URL: cannot open the store at {shown}: {reason}"
                          ) from None
    return engine


def _create_private(database: str | None) -> None:
    """Create a new SQLite file readable by its owner only: it holds feedback texts."""
    if not database or database == ":memory:" or Path(database).exists():
        return
    if not Path(database).parent.is_dir():
        raise ConfigError(f"TUNELAB_DB_URL: cannot open the store at {database}: the folder "
                          f"{Path(database).parent} does not exist; create it or fix the URL")
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))


def head_revision() -> str:
    """The newest migration's revision: migrations are named NNNN_what.py, revision NNNN."""
    return max(path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9]" * 4 + "_*.py"))


def stored_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # a new database, with no version table yet
        return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it in an empty database)."""
    if stored_revision(engine) == head_revision():  # alembic takes 0.2 s to import
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # one migrating process at a time
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite runs DDL outside a transaction, so two processes migrating one new file at
    once would both create tables; a lock file next to the database serialises them."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def session() -> Iterator[Session]:
    """A session on the configured database, committed on success."""
    factory = sessionmaker(engine_for(database_url()), expire_on_commit=False)
    with factory() as s, s.begin():
        yield s
