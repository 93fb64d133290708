"""The project store on SQLite: migrations, recording runs, stages, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from sqlalchemy import create_engine, inspect, text

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ConfigError
from tunelab.store import records
from tunelab.store.db import engine_for


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("TUNELAB_DB_URL", url)
    return url


def summary(accuracy: float, per_class: dict[str, float] | None = None) -> dict[str, Any]:
    return {"task": "text-classification", "model": "minilm-l6", "method": "full",
            "metric": "accuracy", "lr": 5e-5, "test": {"accuracy": accuracy, "n": 10},
            "per_class_f1": per_class or {}, "sources": {"train": "train.csv"},
            "fingerprints": {"train": "ab" * 32}, "train": {"epochs": 1.0, "seconds": 1.0}}


def test_migrations_build_the_schema_in_an_empty_database(fresh_db: str) -> None:
    engine_for(fresh_db)
    engine = create_engine(fresh_db)
    tables = set(inspect(engine).get_table_names())
    assert {"runs", "metrics", "dataset_fingerprints", "model_versions", "feedback",
            "alembic_version"} <= tables
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            == "0002"
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_training_records_the_run(fresh_db: str, tiny_config: dict[str, Any]) -> None:
    result = tunelab.train(parse_config(tiny_config))
    run = records.find_run(str(result.run_dir))
    assert run.name == "tiny" and run.metric == "accuracy"
    assert run.metric_value == pytest.approx(result.metrics["test"]["accuracy"])
    assert {m.name for m in run.metrics} >= {"accuracy", "f1_macro"}
    assert set(run.summary["per_class_f1"]) == {"negative", "positive"}
    [(listed, stage)] = records.list_runs()
    assert listed.id == run.id and stage == "candidate"


def test_promote_archives_the_previous_and_rollback_restores_it(
        fresh_db: str, tmp_path: Path) -> None:
    for name, accuracy in (("a", 0.8), ("b", 0.9)):
        records.record_run(tmp_path / name, summary(accuracy))
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
from tunelab.store.records import record_run
sys.path.insert(0, {tests!r})
from test_store import summary
for i in range(25):
    record_run(Path({base!r}) / f"{{sys.argv[1]}}-{{i}}", summary(i / 25))
"""


def test_two_processes_record_at_once_and_nothing_is_lost(fresh_db: str, tmp_path: Path
                                                           ) -> None:
    script = WRITER.format(tests=str(ROOT / "tests"), base=str(tmp_path))
    env = {**os.environ, "TUNELAB_DB_URL": fresh_db}
    writers = [subprocess.Popen([sys.executable, "-c", script, name], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("x", "y")]
    for writer in writers:
        assert writer.wait(300) == 0, writer.stderr.read()
    names = {run.name for run, _ in records.list_runs()}
    assert names == {f"{w}-{i}" for w in ("x", "y") for i in range(25)}


def test_compare_shows_metric_and_per_class_changes(fresh_db: str, tmp_path: Path) -> None:
    records.record_run(tmp_path / "old", summary(0.8, {"neg": 0.7, "pos": 0.9}))
    records.record_run(tmp_path / "new", summary(0.85, {"neg": 0.8, "pos": 0.9, "mixed": 0.5}))
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "compare", "old",
                             "new"], capture_output=True, text=True,
                            env={**os.environ, "TUNELAB_DB_URL": fresh_db, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("accuracy" in line and "+0.0500" in line for line in lines)
    assert any("neg" in line and "+0.1000" in line for line in lines)
    assert any("mixed" in line and "new" in line for line in lines)
    missing = subprocess.run([sys.executable, "-m", "tunelab.cli", "runs", "show", "nope"],
                             capture_output=True, text=True,
                             env={**os.environ, "TUNELAB_DB_URL": fresh_db})
    assert missing.returncode == 2 and "no recorded run 'nope'" in missing.stderr
