"""The command line, called in-process: bad input, init, train, predict, eval."""

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import sentiment_rows, write_csv

from tunelab.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tunelab", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def bad_input_cases(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (data section changes, expected fragment of the error)."""
    good = sentiment_rows(40)
    empty = [*good[:5], ("   ", "positive"), *good[5:]]
    non_utf8 = tmp_path / "latin1.csv"
    non_utf8.write_bytes("text,label\ngood movie,positive\nmauvais caf\xe9,negative\n"
                         .encode("latin-1"))
    malformed = tmp_path / "malformed.csv"
    malformed.write_text("text,label\ngood movie,positive\nbad, awful movie,negative\n")
    duplicate = tmp_path / "duplicate.csv"
    duplicate.write_text("text,text,label\n" + "".join(f"{t},{t},{lab}\n" for t, lab in good))
    objects = tmp_path / "objects.jsonl"
    objects.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in good)
                       + json.dumps({"text": {"nested": "x"}, "label": "positive"}) + "\n")
    nul = tmp_path / "nul.jsonl"
    nul.write_text(json.dumps({"text": "a\x00b", "label": "positive"}) + "\n")
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("text;label\n" + "".join(f"{t};{lab}\n" for t, lab in good))
    return {
        "one label": ({"train": str(write_csv(tmp_path / "one.csv",
                                              [(t, "positive") for t, _ in good])),
                       "dev": None, "test": None},
                      "only one label in the training data ('positive')"),
        "duplicate header": ({"train": str(duplicate)},
                             "duplicate.csv:1: column 'text' appears twice"),
        "object as text": ({"train": str(objects)},
                           "objects.jsonl:41: column 'text': expected a text, found a JSON dict"),
        "nul byte": ({"train": str(nul)}, "nul.jsonl:1: column 'text': contains a NUL byte"),
        "semicolons": ({"train": str(semicolons)}, "looks semicolon-separated"),
        "missing file": ({"train": str(tmp_path / "nope.csv")}, "nope.csv: file not found"),
        "missing column": ({"text_column": "sentence"},
                           "no column 'sentence' (data.text_column)"),
        "empty text": ({"train": str(write_csv(tmp_path / "empty.csv", empty))},
                       "empty.csv:7: column 'text': empty text"),
        "unseen dev label": (
            {"dev": str(write_csv(tmp_path / "dev3.csv", [*good[:4], ("meh", "neutral")]))},
            "dev3.csv:6: label 'neutral' does not occur in the training data"),
        "malformed csv": ({"train": str(malformed)}, "malformed.csv:3: expected 2 fields, found 3"),
        "non utf-8": ({"train": str(non_utf8)}, "latin1.csv:3: not valid UTF-8"),
    }


@pytest.mark.parametrize("case", ["missing file", "missing column", "empty text",
                                  "unseen dev label", "malformed csv",
                                  "non utf-8", "one label", "duplicate header",
                                  "object as text", "nul byte", "semicolons"])
def test_bad_data_is_one_line_with_exit_code_2(case: str, tiny_config: dict[str, Any],
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    changes, expected = bad_input_cases(tmp_path)[case]
    raw = {**tiny_config, "data": {**tiny_config["data"], **changes}}
    code, _, err = run_cli(["train", str(write_config(tmp_path, raw))], capsys, monkeypatch)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (Path(raw["output_dir"]) / raw["name"]).exists()  # nothing half-written


@pytest.mark.parametrize(("override", "expected"), [
    ("training.lr=fast", "training.lr: must be a learning rate between 0 and 1"),
    ("training.epoch=3", "unknown key 'training.epoch' (did you mean 'epochs'?)"),
    ("method.name=lorra", "unknown method 'lorra' (did you mean 'lora'?)"),
    ("data.max_length=2", "data.max_length: Input should be greater than or equal to 8"),
    ("training.early_stopping.metric=f1", "'f1' is not reported for text-classification"),
    ("name=..", "name: '..' is not a valid run name"),
    ("name=../../x", "is not a valid run name"),
    ("name=", "name: Input should be a valid string"),
    ("data.max_length=256", "data.max_length: 256 is more than the 128 positions"),
    ("method={name: lora, target_modules: [nope]}", "method.target_modules: "),
])
def test_bad_config_value_is_one_line_with_exit_code_2(
        override: str, expected: str, tiny_config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, tiny_config)
    code, _, err = run_cli(["train", str(path), "--set", override], capsys, monkeypatch)
    assert code == 2 and expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (Path(tiny_config["output_dir"]) / "tiny").exists()


def test_init_writes_a_commented_config_and_refuses_to_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "new.yaml"
    assert run_cli(["init", str(path)], capsys, monkeypatch)[0] == 0
    assert "# " in path.read_text() and "early_stopping" in path.read_text()
    code, _, err = run_cli(["init", str(path)], capsys, monkeypatch)
    assert code == 2 and "--force" in err


def test_train_predict_and_eval(tiny_config: dict[str, Any], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, tiny_config)
    code, out, err = run_cli(["train", str(path)], capsys, monkeypatch)
    assert code == 0 and "Per-class report" in out
    assert "training: method full, " in err and "96 training and 24 dev examples" in err
    assert "{'loss'" not in err + out and "eval_loss" not in err + out  # no raw log dicts
    run = str(Path(tiny_config["output_dir"]) / "tiny")

    code, _, err = run_cli(["train", str(path)], capsys, monkeypatch)
    assert code == 2 and "--overwrite" in err  # an existing run is never clobbered silently

    code, out, _ = run_cli(["predict", run, "a great and excellent movie"], capsys, monkeypatch)
    prediction = json.loads(out.strip().splitlines()[-1])
    assert prediction["label"] in {"negative", "positive"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("great movie\n\nawful plot\n")
    output = tmp_path / "out.jsonl"
    code, _, _ = run_cli(["predict", run, "--input", str(inputs), "--output", str(output)],
                         capsys, monkeypatch)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert code == 0 and [row["text"] for row in rows] == ["great movie", "awful plot"]

    code, out, _ = run_cli(["eval", run, "--data", tiny_config["data"]["test"]], capsys,
                           monkeypatch)
    assert code == 0 and "accuracy" in out
    assert (Path(run) / "eval" / "test.csv" / "metrics.json").is_file()

    code, _, err = run_cli(["predict", str(tmp_path), "hello"], capsys, monkeypatch)
    assert code == 2 and "not a tunelab run" in err

    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    for args, expected in (
            (["--input", str(blank)], "blank.txt: no texts"),
            (["hello", "--output", str(tmp_path)], "is a directory"),
            (["caf\udce9"], "input 1: contains a lone surrogate")):
        code, _, err = run_cli(["predict", run, *args], capsys, monkeypatch)
        assert code == 2 and expected in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_predict_reads_both_columns_for_a_pair_model(
        tiny_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    files = {}
    for split, n, seed in (("train", 48, 1), ("dev", 12, 2), ("test", 12, 3)):
        rows = [(t, "the plot", lab) for t, lab in sentiment_rows(n, seed)]
        files[split] = str(write_csv(tmp_path / f"{split}.csv", rows, ("a", "b", "label")))
    raw = {**tiny_config, "name": "pairs", "training": {"epochs": 1, "batch_size": 8},
           "data": {**files, "text_column": "a", "text_pair_column": "b", "max_length": 32}}
    assert run_cli(["train", str(write_config(tmp_path, raw))], capsys, monkeypatch)[0] == 0
    run = str(Path(tiny_config["output_dir"]) / "pairs")
    code, out, err = run_cli(["predict", run, "--input", files["test"]], capsys, monkeypatch)
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and len(rows) == 12, err
    assert rows[0]["pair"][1] == "the plot" and rows[0]["label"] in {"negative", "positive"}
    code, _, err = run_cli(["predict", run, "one text only"], capsys, monkeypatch)
    assert code == 2 and "trained on text pairs" in err


def test_text_the_model_cannot_read_is_named(
        tiny_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    raw = {**tiny_config, "training": {"epochs": 1, "batch_size": 8}}
    assert run_cli(["train", str(write_config(tmp_path, raw))], capsys, monkeypatch)[0] == 0
    run = str(Path(tiny_config["output_dir"]) / "tiny")
    with caplog.at_level("WARNING", logger="tunelab"):
        code, _, _ = run_cli(["predict", run, "这部电影很好看", "服务太差了"], capsys, monkeypatch)
    assert code == 0 and "100% of the tokens are unknown" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tunelab"):
        run_cli(["predict", run, "a great movie"], capsys, monkeypatch)
    assert "unknown" not in caplog.text


def test_training_says_when_early_stopping_ended_it(tiny_config: dict[str, Any],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_config["training"] |= {"epochs": 40, "early_stopping": {"patience": 1,
                                                                 "min_epochs": 0}}
    code, _, err = run_cli(["train", str(write_config(tmp_path, tiny_config))], capsys,
                           monkeypatch)
    assert code == 0
    assert re.search(r"early stopping: dev accuracy stopped improving; ended at step \d+ of "
                     r"480; the best dev accuracy was [01]\.\d{4}", err), err[-2000:]


def test_a_run_that_loses_to_the_probe_ships_the_probe_says_so_and_needs_force(
        tiny_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A random head at a learning rate too small to move: fine-tuning stays at chance on
    dev, below the frozen-encoder probe. It used its whole plan, so it trains on while dev
    improves; dev does not, so the run ships the probe and says so."""
    tiny_config |= {"name": "stuck", "training": {
        **tiny_config["training"], "lr": 1e-7, "epochs": 2, "head_init": "keep",
        "fallback_to_probe": True, "extend_budget": 1.0, "early_stopping": {"patience": 20}}}
    code, out, err = run_cli(["train", str(write_config(tmp_path, tiny_config))], capsys,
                             monkeypatch)
    assert code == 0
    assert re.search(r"while dev was still improving: training up to 24 more steps", err), err
    assert "no better: the model before the extension is kept" in err
    assert "WARNING: fine-tuning ended below the frozen encoder + linear head baseline" in out
    assert "shipped: the probe" in out
    assert "warning: fine-tuning ended below" in err
    run = Path(tiny_config["output_dir"]) / "stuck"
    record = json.loads((run / "metrics.json").read_text())
    assert record["shipped"] == "probe"
    assert record["train"]["extended_steps"] > 0
    assert record["train"]["steps"] == 24 + record["train"]["extended_steps"]
    steps = [entry["step"] for entry in json.loads((run / "log_history.json").read_text())]
    assert max(steps) == record["train"]["steps"] and steps == sorted(steps)
    assert record["dev_baselines"]["probe"]["accuracy"] > record["train"]["best_dev_metric"]
    assert record["test"] == record["baselines"]["probe"]
    assert json.loads((run / "model/tunelab.json").read_text())["method"] == "head"
    assert "so the run ships it instead" in (run / "README.md").read_text()
    shipped = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(p["text"] for p in shipped) + "\n")
    code, out, _ = run_cli(["predict", str(run), "--input", str(texts)], capsys, monkeypatch)
    assert code == 0
    assert [json.loads(line)["label"] for line in out.splitlines()] == [p["label"]
                                                                       for p in shipped]
    code, _, err = run_cli(["models", "promote", str(run)], capsys, monkeypatch)
    assert code == 2 and "is not promoted: fine-tuning ended below" in err
    assert "--force" in err
    code, out, _ = run_cli(["models", "promote", str(run), "--force"], capsys, monkeypatch)
    assert code == 0 and "production: stuck" in out


def test_without_a_probe_a_loss_that_does_not_fall_is_named(
        tiny_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_config |= {"name": "flat", "evaluation": {"baselines": False}, "training": {
        **tiny_config["training"], "lr": 1e-7, "epochs": 2, "head_init": "keep"}}
    code, out, err = run_cli(["train", str(write_config(tmp_path, tiny_config))], capsys,
                             monkeypatch)
    assert code == 0
    assert "WARNING: the training loss did not fall" in out
    assert "warning: the training loss did not fall" in err
