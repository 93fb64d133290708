"""`tunelab compress`: variants built and measured against the run, a selection that
predict and serve then load, and bad input refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from test_export import trained

import tunelab
from tunelab.errors import ModelError


def test_compress_measures_the_variants_and_predict_uses_the_selection(
        tiny_config: dict[str, Any]) -> None:
    run = trained(tiny_config)
    report = tunelab.api.compress(run, layers=1, ffn_keep=0.5, epochs=4, max_drop=100.0,
                                  target="size")
    names = [row["name"] for row in report["variants"]]
    assert names == ["original", "int8", "int8 (dynamic)", "pruned", "pruned + int8",
                     "distilled", "distilled + int8"]
    rows = {row["name"]: row for row in report["variants"]}
    assert rows["original"]["agreement"] == 1.0 and rows["original"]["drop_pts"] == 0.0
    for row in rows.values():
        assert row["latency_p99_ms"] >= row["latency_p50_ms"] > 0
        assert row["throughput"] > 0 and row["cold_start_s"] > 0 and row["size_mb"] > 0
    assert rows["distilled + int8"]["size_mb"] < rows["distilled"]["size_mb"]
    assert rows["pruned"]["size_mb"] < rows["original"]["size_mb"]
    # the smallest variant wins the size target when any loss is allowed
    smallest = min(report["variants"], key=lambda r: r["size_mb"])["name"]
    assert report["selected"] == smallest
    folder = run / "compress"
    for name in ("report.json", "report.md", "pareto.png", "selected.json"):
        assert (folder / name).is_file(), name
    assert f"**{smallest}**" in (folder / "report.md").read_text()

    served = tunelab.load(run)
    assert served.compressed == smallest
    texts = ["the movie was great", "awful plot"]
    assert len(served.predict(texts)) == 2
    assert tunelab.load(run, "torch").compressed is None  # a named backend is the run's own

    student = folder / "runs" / "distilled" / "metrics.json"
    trained_at = student.stat().st_mtime
    strict = tunelab.api.compress(run, layers=1, ffn_keep=0.5, epochs=4, max_drop=0.0,
                                  target="throughput")
    assert student.stat().st_mtime == trained_at  # same settings: the students are reused
    assert strict["selected_on"] == f"dev: {tiny_config['data']['dev']}"  # not on test
    assert all(row["dev_drop_pts"] is not None for row in strict["variants"])
    assert all(row["dev_drop_pts"] <= 0.0 for row in strict["variants"]
               if row["name"] == strict["selected"])
    if strict["selected"] == "original":  # nothing beat the run: it serves itself
        assert not (folder / "selected.json").exists()
    elif json.loads((folder / "selected.json").read_text())["run"] != ".":  # a student
        shutil.rmtree(run / json.loads((folder / "selected.json").read_text())["run"])
        with pytest.raises(ModelError, match="which is gone; run `tunelab compress` again"):
            tunelab.load(run)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunelab.cli", "compress", *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_bad_input_is_one_line_and_writes_nothing(tiny_config: dict[str, Any]) -> None:
    run = trained(tiny_config)
    result = cli(str(run), "--ffn-keep", "1.5")
    assert result.returncode == 2 and "1.5" in result.stderr, result.stderr
    for split in ("test", "dev"):  # a run whose test and dev files are gone
        Path(tiny_config["data"][split]).unlink()
    result = cli(str(run))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--data" in result.stderr
    assert not (run / "compress").exists()
    report = json.loads((run / "metrics.json").read_text())
    assert report["task"] == "text-classification"
