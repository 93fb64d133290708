"""Run directories: names stay inside output_dir, only tunelab runs are replaced, a new
run replaces the old one only when complete, one writer at a time, honest --resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import sentiment_rows, write_csv

import tunelab
from tunelab.config import parse_config
from tunelab.errors import ConfigError, DataError, ModelError
from tunelab.retrain import RetrainOptions, retrain
from tunelab.rundir import exclusive
from tunelab.store import records


@pytest.fixture(autouse=True)
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")


def quick(tiny_config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**tiny_config, "training": {**tiny_config["training"], "epochs": 1},
            "evaluation": {"baselines": False}, **changes}


@pytest.mark.parametrize("name", ["..", ".", "", "../../x", "a/b", ".hidden"])
def test_a_run_name_is_one_path_component(name: str, tiny_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="name"):
        parse_config({**tiny_config, "name": name})


def test_overwrite_with_bad_data_keeps_the_old_run(tiny_config: dict[str, Any],
                                                   tmp_path: Path) -> None:
    run = tunelab.train(parse_config(quick(tiny_config))).run_dir
    before = (run / "metrics.json").read_bytes()
    broken = quick(tiny_config,
                   data={**tiny_config["data"], "train": str(tmp_path / "typo.csv")})
    with pytest.raises(DataError, match=r"typo\.csv: file not found"):
        tunelab.train(parse_config(broken), overwrite=True)
    assert (run / "metrics.json").read_bytes() == before
    again = tunelab.train(parse_config(quick(tiny_config, seed=3)), overwrite=True).run_dir
    assert again == run and (run / "metrics.json").read_bytes() != before
    assert sorted(p.name for p in run.parent.iterdir() if p.name.startswith(".tiny.")
                  and not p.name.endswith(".lock")) == []  # no work or old folder left


def test_overwrite_never_replaces_a_folder_tunelab_did_not_write(tiny_config: dict[str, Any]
                                                                 ) -> None:
    folder = Path(tiny_config["output_dir"]) / "tiny"
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="is not a tunelab run"):
        tunelab.train(parse_config(quick(tiny_config)), overwrite=True)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_overwrite_never_replaces_the_production_model(tiny_config: dict[str, Any]) -> None:
    run = tunelab.train(parse_config(quick(tiny_config))).run_dir
    records.promote(str(run), force=True)  # a quick run that has not learned yet
    with pytest.raises(ConfigError, match="is the production model"):
        tunelab.train(parse_config(quick(tiny_config)), overwrite=True)
    assert records.production().path == str(run.resolve())


def test_two_trainings_into_one_directory_cannot_both_run(tiny_config: dict[str, Any]) -> None:
    config = parse_config(quick(tiny_config))
    with exclusive(config.run_dir), pytest.raises(ConfigError, match="is being written by"):
        tunelab.train(config)
    assert not config.run_dir.exists()


def test_resume_refuses_a_finished_run_and_a_changed_config(tiny_config: dict[str, Any]
                                                            ) -> None:
    tunelab.train(parse_config(quick(tiny_config)))
    with pytest.raises(ConfigError, match="finished run: there is nothing to resume"):
        tunelab.train(parse_config(quick(tiny_config)), resume=True)
    other = quick(tiny_config, name="never-started")
    with pytest.raises(ConfigError, match="no interrupted run to resume"):
        tunelab.train(parse_config(other), resume=True)
    # an interrupted run (its work folder) with another learning rate
    work = Path(tiny_config["output_dir"]) / ".changed.partial"
    work.mkdir()
    (work / ".tunelab-run").touch()
    (work / "config.yaml").write_text(parse_config(quick(tiny_config, name="changed"))
                                      .to_yaml())
    changed = quick(tiny_config, name="changed")
    changed["training"] = {**changed["training"], "lr": 0.1}
    with pytest.raises(ConfigError, match=r"config changed since .* \(training.lr\)"):
        tunelab.train(parse_config(changed), resume=True)


def test_bad_model_inputs_leave_nothing_behind(tiny_config: dict[str, Any], tmp_path: Path,
                                               tiny_model_dir: Path) -> None:
    import shutil

    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, no_tokenizer / name)
    cases = [
        ({"model": {"name": str(no_tokenizer)}}, ModelError, "cannot load a tokenizer"),
        ({"data": {**tiny_config["data"], "max_length": 512}}, ModelError,
         "512 is more than the 128 positions"),
        ({"method": {"name": "lora", "target_modules": ["nope"]}}, ConfigError,
         "no module named nope"),
    ]
    for changes, error, message in cases:
        with pytest.raises(error, match=message):
            tunelab.train(parse_config(quick(tiny_config, **changes)))
        leftovers = [p.name for p in Path(tiny_config["output_dir"]).glob("*")
                     if not p.name.endswith(".lock")]
        assert leftovers == [], leftovers


def test_retrain_refuses_to_replace_a_run_and_never_the_production_one(
        tiny_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = tunelab.train(parse_config(quick(tiny_config))).run_dir
    new = write_csv(tmp_path / "new.csv", sentiment_rows(20, seed=5))
    options = RetrainOptions(data=new, epochs=1, promote=False, name="next")
    first = retrain(base, options)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        retrain(base, options)
    records.promote(str(first.run_dir))
    with pytest.raises(ConfigError, match="is the production model"):
        retrain(base, RetrainOptions(data=new, epochs=1, name="next", overwrite=True))
    assert records.production().path == str(first.run_dir.resolve())
    assert json.loads((first.run_dir / "retrain.json").read_text())["run"] == str(
        first.run_dir)
    for name in ("..", "", "../../x"):
        with pytest.raises(ConfigError, match="--name"):
            retrain(base, RetrainOptions(data=new, epochs=1, name=name))
    runs = Path(tiny_config["output_dir"])
    assert not (runs / "../../x").resolve().exists()
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == \
        ["next", "next-data", "tiny"]


def test_retrain_keeps_the_second_text_of_a_pair_model(tiny_config: dict[str, Any],
                                                       tmp_path: Path) -> None:
    files = {}
    for split, n, seed in (("train", 64, 1), ("dev", 16, 2), ("test", 16, 3)):
        rows = [(text, "context", label) for text, label in sentiment_rows(n, seed)]
        files[split] = str(write_csv(tmp_path / f"p{split}.csv", rows,
                                     ("first", "second", "label")))
    raw = quick(tiny_config, name="pairs",
                data={**files, "text_column": "first", "text_pair_column": "second",
                      "max_length": 32})
    base = tunelab.train(parse_config(raw)).run_dir
    new_rows = [(t, "context", lab) for t, lab in sentiment_rows(20, seed=5)]
    new = write_csv(tmp_path / "new.csv", new_rows, ("first", "second", "label"))
    result = retrain(base, RetrainOptions(data=new, epochs=1, promote=False, name="pairs-2"))
    header = (Path(tiny_config["output_dir"]) / "pairs-2-data" /
              "pairs-2-train.csv").read_text().splitlines()[0]
    assert header == "first,second,label"
    assert tunelab.load(result.run_dir).takes_pairs


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path: Path
                                                                        ) -> None:
    from tunelab.rundir import atomic_path

    stale = tmp_path / ".export.tmp-999999"  # a writer that was killed (no such process)
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"x" * 1000)
    running = tmp_path / ".export.tmp-1"  # pid 1 is alive: another writer, left alone
    running.mkdir()
    with atomic_path(tmp_path / "export") as tmp:
        tmp.mkdir()
        (tmp / "report.json").write_text("{}")
    assert not stale.exists() and running.exists()
    assert (tmp_path / "export" / "report.json").is_file()


def test_weights_follow_the_umask_like_every_other_file(tiny_config: dict[str, Any]) -> None:
    import os

    mask = os.umask(0o022)
    try:
        run = tunelab.train(parse_config(quick(tiny_config))).run_dir
    finally:
        os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (run / "model").iterdir()}
    assert modes["model.safetensors"] == 0o644, modes
    assert set(modes.values()) == {0o644}
