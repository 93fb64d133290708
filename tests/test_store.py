"""The project store, on SQLite and on a real PostgreSQL server: migrations, recording runs,
stages, API keys, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from conftest import ROOT
from sqlalchemy import create_engine, inspect, text

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ConfigError, DataError
from tunelab.record import RunRecord
from tunelab.serving.keys import KeyCache, create_key, import_key_file, list_keys
from tunelab.store import records
from tunelab.store.db import MIGRATIONS, engine_for, head_revision, migrate, stored_revision


def record(accuracy: float, per_class: dict[str, float] | None = None) -> RunRecord:
    """A run record as training writes it."""
    return RunRecord.model_validate({
            "task": "text-classification", "model": "minilm-l6", "method": "full",
            "metric": "accuracy", "lr": 5e-5, "test": {"accuracy": accuracy, "n": 10},
            "per_class_f1": per_class or {}, "sources": {"train": "train.csv"},
            "fingerprints": {"train": "ab" * 32}, "train": {"epochs": 1.0, "seconds": 1.0}})


def test_migrations_build_the_schema_in_an_empty_database(store_url: str) -> None:
    engine = create_engine(store_url)
    assert inspect(engine).get_table_names() == []
    engine_for(store_url)
    tables = set(inspect(engine).get_table_names())
    assert {"runs", "metrics", "dataset_fingerprints", "model_versions", "feedback",
            "api_keys", "alembic_version"} <= tables
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert heads == [head_revision()]  # the quick check that skips alembic reads the same
    with engine.connect() as connection:
        assert [connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                ] == heads
        if engine.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        # a store one migration behind is brought to the head, not taken as current
        connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        connection.execute(text("DROP TABLE audit_log"))
        connection.commit()
    migrate(engine)
    assert "audit_log" in inspect(engine).get_table_names()
    assert stored_revision(engine) == head_revision()
    engine.dispose()


def test_training_records_the_run(store_url: str, tiny_config: dict[str, Any]) -> None:
    result = tunelab.train(parse_config(tiny_config))
    run = records.find_run(str(result.run_dir))
    assert run.name == "tiny" and run.metric == "accuracy"
    assert run.metric_value == pytest.approx(result.metrics["test"]["accuracy"])
    assert {m.name for m in run.metrics} >= {"accuracy", "f1_macro"}
    assert set(run.record.per_class_f1) == {"negative", "positive"}
    [(listed, stage)] = records.list_runs()
    assert listed.id == run.id and stage == "candidate"


def test_promote_archives_the_previous_and_rollback_restores_it(
        store_url: str, tmp_path: Path) -> None:
    for name, accuracy in (("a", 0.8), ("b", 0.9)):
        records.record_run(tmp_path / name, record(accuracy))
    assert records.production() is None
    with pytest.raises(ConfigError, match="no production model"):
        records.rollback()
    records.promote("a")
    promoted, previous = records.promote("b")
    assert promoted.name == "b" and previous.name == "a"
    assert records.production().name == "b"
    stages = {run.name: stage for run, stage in records.list_runs()}
    assert stages == {"a": "archived", "b": "production"}
    restored, replaced = records.rollback()
    assert (restored.name, replaced.name) == ("a", "b")
    assert records.production().name == "a"


WRITER = """
import sys
from pathlib import Path
from tunelab.store.records import add_feedback, record_run
sys.path.insert(0, {tests!r})
from test_store import record
for i in range(25):
    run = Path({base!r}) / f"{{sys.argv[1]}}-{{i}}"
    record_run(run, record(i / 25))
    add_feedback(run, "v1", f"text {{i}}", "positive", request_id=f"{{sys.argv[1]}}-{{i}}")
"""


def test_two_processes_record_runs_and_feedback_at_once_and_nothing_is_lost(
        store_url: str, tmp_path: Path) -> None:
    script = WRITER.format(tests=str(ROOT / "tests"), base=str(tmp_path))
    env = {**os.environ, "TUNELAB_DB_URL": store_url}
    writers = [subprocess.Popen([sys.executable, "-c", script, name], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("x", "y")]
    for writer in writers:
        assert writer.wait(300) == 0, writer.stderr.read()
    expected = {f"{w}-{i}" for w in ("x", "y") for i in range(25)}
    assert {run.name for run, _ in records.list_runs()} == expected
    assert sorted(row.request_id for row in records.feedback_rows()) == sorted(expected)


def test_compare_shows_metric_and_per_class_changes(store_url: str, tmp_path: Path) -> None:
    records.record_run(tmp_path / "old", record(0.8, {"neg": 0.7, "pos": 0.9}))
    records.record_run(tmp_path / "new", record(0.85, {"neg": 0.8, "pos": 0.9, "mixed": 0.5}))
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "compare", "old",
                             "new"], capture_output=True, text=True,
                            env={**os.environ, "TUNELAB_DB_URL": store_url, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("accuracy" in line and "+5.00p" in line for line in lines)
    assert any("neg" in line and "+10.00p" in line for line in lines)
    assert any("mixed" in line and "new" in line for line in lines)
    assert "warning" not in result.stderr
    other = record(0.9).model_copy(update={"fingerprints": {"test": "cd" * 32},
                                           "task": "token-classification"})
    records.record_run(tmp_path / "elsewhere", other)
    warned = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "compare", "old",
                             "elsewhere"], capture_output=True, text=True,
                            env={**os.environ, "TUNELAB_DB_URL": store_url, "COLUMNS": "200"})
    assert warned.returncode == 0
    assert "different tasks" in warned.stderr and "tested on different data" in warned.stderr
    missing = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "show", "nope"],
                             capture_output=True, text=True,
                             env={**os.environ, "TUNELAB_DB_URL": store_url})
    assert missing.returncode == 2 and "no recorded run 'nope'" in missing.stderr


def test_api_keys_live_hashed_in_the_store_and_revocation_reaches_a_running_cache(
        store_url: str) -> None:
    key = create_key("ci")
    with pytest.raises(ConfigError, match="already exists"):
        create_key("ci")
    engine = create_engine(store_url)
    with engine.connect() as connection:
        stored = " ".join(str(v) for row in connection.execute(text("SELECT * FROM api_keys"))
                          for v in row)
    engine.dispose()
    secret = key.split("_", 2)[2]  # token_urlsafe secrets may themselves contain "_"
    assert len(secret) > 20 and secret not in stored
    cache = KeyCache(every=0.0)
    assert cache.verify(key).name == "ci"
    assert cache.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert cache.verify("nonsense") is None and cache.verify(None) is None
    revoke = subprocess.run([sys.executable, "-m", "tunelab.cli", "keys", "revoke", "ci"],
                            capture_output=True, text=True,
                            env={**os.environ, "TUNELAB_DB_URL": store_url})
    assert revoke.returncode == 0, revoke.stderr
    assert cache.verify(key) is None and list_keys() == []
    assert create_key("ci") != key  # the name is free again once revoked


def test_an_old_key_file_imports_and_its_keys_keep_working(store_url: str, tmp_path: Path
                                                           ) -> None:
    salt, secret = "00ff00ff00ff00ff", "s3cret-of-an-old-key"
    legacy = tmp_path / "keys.json"
    legacy.write_text(json.dumps([{"name": "old", "key_id": "abcd1234", "salt": salt,
                                   "digest": hashlib.sha256(f"{salt}:{secret}".encode())
                                   .hexdigest(), "created": 1.0}]))
    assert import_key_file(legacy) == ["old"]
    assert import_key_file(legacy) == []  # already there
    assert KeyCache().verify(f"tl_abcd1234_{secret}").name == "old"
    legacy.write_text("{not json")
    with pytest.raises(DataError, match=r"keys\.json: not a tunelab key file"):
        import_key_file(legacy)


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "is not a database URL"),
    ("postgresql://nobody@127.0.0.1:1/none", "cannot open the store at postgresql"),
])
def test_a_bad_store_url_is_one_line_naming_the_variable(url: str, message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "list"],
                            capture_output=True, text=True,
                            env={**os.environ, "TUNELAB_DB_URL": url})
    assert result.returncode == 2
    assert "TUNELAB_DB_URL" in result.stderr and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


RACER = """
import sys
sys.path.insert(0, {tests!r})
from tunelab.errors import ConfigError
from tunelab.serving.keys import create_key
from tunelab.store.records import promote
try:
    if sys.argv[1] == "promote":
        promote(sys.argv[2])
    else:
        create_key("same-name")
    print("won")
except ConfigError as error:
    print("lost:", error)
"""


def test_concurrent_promotions_and_key_creations_leave_one_winner(
        store_url: str, tmp_path: Path) -> None:
    for i in range(8):
        records.record_run(tmp_path / f"r{i}", record(i / 10))
    records.promote("r0")
    script = RACER.format(tests=str(ROOT / "tests"))
    env = {**os.environ, "TUNELAB_DB_URL": store_url}
    for args in [["promote", f"r{i}"] for i in range(1, 8)], [["key"]] * 8:
        racers = [subprocess.Popen([sys.executable, "-c", script, *a], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                  for a in args]
        for racer in racers:
            out, err = racer.communicate(timeout=300)
            assert racer.returncode == 0 and out.startswith(("won", "lost:")), err
    from tunelab.store.db import session
    from tunelab.store.schema import ApiKey, ModelVersion

    with session() as s:
        stages = [v.stage for v in s.query(ModelVersion)]
        active = [k for k in s.query(ApiKey) if k.revoked_at is None and k.name == "same-name"]
    assert stages.count("production") == 1
    assert len(active) == 1


def test_promoting_the_production_model_again_archives_nothing(store_url: str,
                                                                tmp_path: Path) -> None:
    records.record_run(tmp_path / "solo", record(0.9))
    records.promote("solo")
    promoted, previous = records.promote("solo")
    assert promoted.name == "solo" and previous is None
    assert {run.name: stage for run, stage in records.list_runs()} == {"solo": "production"}


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    path = tmp_path / "tunelab.db"
    engine_for(f"sqlite:///{path}")
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_store_is_found_as_git_finds_its_repository(tmp_path: Path) -> None:
    """`init` makes a project; `runs list` from a subfolder sees its runs; outside any
    project the user-level store is used, and creating a store says where."""
    project = tmp_path / "project"
    deep = project / "notebooks" / "week1"
    deep.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TUNELAB_DB_URL", "TUNELAB_HOME")}
    env["XDG_DATA_HOME"] = str(tmp_path / "user-data")

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunelab.cli", *args], cwd=cwd, env=env,
                              capture_output=True, text=True)

    assert cli("init", "config.yaml", cwd=project).returncode == 0
    assert (project / ".tunelab").is_dir()
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
              "from pathlib import Path; from test_store import record; "
              "from tunelab.store.records import record_run; "
              "record_run(Path('runs/first'), record(0.9))")
    made = subprocess.run([sys.executable, "-c", script], cwd=project, env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "created the project store" in made.stderr
    assert (project / ".tunelab" / "tunelab.db").is_file()
    listed = cli("runs", "list", cwd=deep)
    assert listed.returncode == 0 and "first" in listed.stdout, listed.stderr
    assert not (deep / ".tunelab").exists()
    elsewhere = cli("runs", "list", cwd=tmp_path)
    assert elsewhere.returncode == 0 and "first" not in elsewhere.stdout
    assert "user-level store" in elsewhere.stderr
    assert str(tmp_path / "user-data") in elsewhere.stderr
    env["TUNELAB_HOME"] = str(tmp_path / "home")
    assert cli("runs", "list", cwd=tmp_path).returncode == 0
    assert (tmp_path / "home" / "tunelab.db").is_file()
