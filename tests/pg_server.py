"""A throwaway PostgreSQL server for the store tests: Debian's binaries, a fresh cluster in
a temp directory, listening on 127.0.0.1 only. `bash scripts/setup.sh --tests` installs the
server package; `TUNELAB_TEST_POSTGRES_URL` points the tests at an existing server instead."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port
from sqlalchemy import create_engine, make_url, text


class ServerUnavailable(Exception):
    """PostgreSQL cannot be started here; the message says why."""


def server_binaries() -> Path:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None)
    if found is None:
        raise ServerUnavailable("PostgreSQL server binaries not found (no pg_ctl); install "
                                "them with `bash scripts/setup.sh --tests`")
    return Path(found).parent


def _run(command: list[str], as_user: list[str]) -> None:
    done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ServerUnavailable(f"`{' '.join(command[:2])}` failed: "
                                f"{detail[-1] if detail else done.returncode}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of a superuser on a new, empty cluster (database `postgres`)."""
    external = os.environ.get("TUNELAB_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    binaries = server_binaries()
    root = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no 'postgres' user to run "
                                    "the server as") from None
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
              "--no-sync", "-E", "UTF8"], as_user)
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
              "-t", "60", "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
              "-c fsync=off -c max_connections=200", "start"], as_user)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                            "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A URL of a new empty database on the server."""
    name = f"tunelab_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
