"""The bad-input corpus (bench/bad_inputs_cases.yaml) against the real command line and a
real `tunelab serve`: for each case, a clean one-line error, an imprecise one, a
traceback, garbage accepted, or a half-written output. Also the server's memory growth
under three 200 MB chunked bodies sent without a key.

    .venv/bin/python bench/bad_inputs.py            # every case (about 10 minutes)
    .venv/bin/python bench/bad_inputs.py --only http-no-key,empty-text
    .venv/bin/python bench/bad_inputs.py --resume   # skip cases saved by an earlier run

Writes bench/work/bad_inputs/rows/*.json as each case finishes, the "Bad input" section of
bench/RESULTS.md and the bad_input_* keys of bench/results.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs_server import chunked_rss_growth_mb, http_case, running_server
from common import BENCH, ROOT, WORK, update_results, update_section

HERE = WORK / "bad_inputs"
ROWS = HERE / "rows"
CASES = BENCH / "bad_inputs_cases.yaml"
GOOD = [("a great and excellent movie", "positive"), ("awful plot and poor acting", "negative"),
        ("wonderful and happy", "positive"), ("terrible and sad", "negative")] * 10
KINDS = ("clean", "imprecise", "traceback", "garbage accepted", "half-written")


def good_csv() -> str:
    return "".join(f"{text},{label}\n" for text, label in GOOD)


def good_jsonl() -> str:
    return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in GOOD)


def fill(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, text in places.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, list):
        return [fill(v, places) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, places) for k, v in value.items()}
    return value


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def fixtures() -> dict[str, str]:
    """A tiny model and three trained runs (classification, NER, text pairs), made once."""
    ready = HERE / "fixtures.json"
    if ready.is_file():
        return json.loads(ready.read_text())
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_model, sentiment_rows, write_csv  # the tests' recipes
    from test_token_classification import conll_file

    import tunelab
    from tunelab.config import parse_config

    base = HERE / "fixtures"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    model = str(build_tiny_model(base / "tiny-bert"))
    files = {s: str(write_csv(base / f"{s}.csv", sentiment_rows(n, seed))) for s, n, seed in
             (("train", 96, 1), ("dev", 24, 2), ("test", 24, 3))}
    common = {"output_dir": str(base / "runs"), "seed": 7, "threads": 1,
              "model": {"name": model}, "evaluation": {"baselines": False},
              "training": {"epochs": 2, "batch_size": 8, "lr": 2e-3}}
    run = tunelab.train(parse_config({**common, "name": "sentiment",
                                      "data": {**files, "max_length": 32}})).run_dir
    ner_files = {s: str(conll_file(base / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    ner = tunelab.train(parse_config({**common, "name": "ner",
                                      "task": {"type": "token-classification"},
                                      "data": {**ner_files, "max_length": 16}})).run_dir
    pair_files = {}
    for split, path in files.items():
        rows = [line.split(",") for line in Path(path).read_text().splitlines()[1:]]
        pair_files[split] = str(write_csv(base / f"pair-{split}.csv",
                                          [(t, "the plot", lab) for t, lab in rows],
                                          ("first", "second", "label")))
    pair = tunelab.train(parse_config({**common, "name": "pairs", "data": {
        **pair_files, "text_column": "first", "text_pair_column": "second",
        "max_length": 32}})).run_dir
    found = {"model": model, "run": str(run), "ner_run": str(ner), "pair_run": str(pair),
             "run_parent": str(run.parent), "run_name": run.name}
    ready.write_text(json.dumps(found))
    return found


def prepare(case: dict[str, Any], tmp: Path, places: dict[str, str]) -> None:
    for name, content in (case.get("files") or {}).items():
        text = fill(content, {**places, "good_csv": good_csv(), "good_jsonl": good_jsonl()})
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1" if case.get("latin1") else "utf-8",
                                     "surrogatepass"))
    setup = case.get("setup")
    if setup == "model_without_tokenizer":
        (tmp / "m").mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(Path(places["model"]) / name, tmp / "m" / name)
    elif setup == "foreign_folder":
        (tmp / "runs" / "bad").mkdir(parents=True)
        (tmp / "runs" / "bad" / "thesis.tex").write_text("years of work")


def snapshot(paths: list[str]) -> dict[str, str | None]:
    import hashlib

    out: dict[str, str | None] = {}
    for name in paths:
        path = Path(name)
        if path.is_file():
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[name] = "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
        else:
            out[name] = None
    return out


def leftovers(tmp: Path, places: dict[str, str]) -> list[str]:
    """Half-built runs and temporary files left after a failure."""
    found = []
    runs = tmp / "runs"
    if runs.is_dir():
        found += [str(p) for p in runs.iterdir() if not p.name.endswith(".lock")
                  and p.name != "bad"]
        if (runs / "bad").exists() and not (runs / "bad" / "thesis.tex").exists():
            found.append(str(runs / "bad"))
    for key in ("run", "ner_run", "pair_run"):
        found += [str(p) for p in Path(places[key]).glob(".*.tmp-*")]
        found += [str(p) for p in Path(places[key]).parent.glob(".*.partial")]
    return found


def cli_case(case: dict[str, Any], places: dict[str, str], tmp: Path) -> dict[str, Any]:
    config = merged({
        "name": "bad", "output_dir": "{tmp}/runs", "seed": 1, "threads": 1,
        "model": {"name": "{model}"},
        "data": {"train": "{tmp}/train.csv", "dev": "{tmp}/dev.csv", "test": "{tmp}/test.csv",
                 "max_length": 32},
        "training": {"epochs": 1, "batch_size": 8}, "evaluation": {"baselines": False},
    }, case.get("config") or {})
    for split in ("train", "dev", "test"):
        (tmp / f"{split}.csv").write_text("text,label\n" + good_csv())
    (tmp / "config.yaml").write_text(yaml.safe_dump(fill(config, places)))
    args = fill(case.get("args") or ["{config}"], places)
    argv: list[str | bytes] = [a.removeprefix("@latin1:").encode("latin-1")
                               if a.startswith("@latin1:") else a for a in args]
    env = {**os.environ, "TUNELAB_DB_URL": f"sqlite:///{tmp / 'store.db'}",
           "PYTHONUNBUFFERED": "1", **fill(case.get("env") or {}, places)}
    command = [sys.executable, "-m", "tunelab.cli", case["command"]]
    if case.get("setup") == "existing_key":
        subprocess.run([*command, "create", "--name", "existing"], env=env, check=True,
                       capture_output=True, cwd=tmp)
    watched = fill(case.get("unchanged") or [], places)
    before = snapshot(watched)
    result = subprocess.run([*command, *argv], env=env, capture_output=True, cwd=tmp,
                            timeout=600)
    stderr = result.stderr.decode("utf-8", "replace")
    expected_exit = case.get("exit", 2)
    expect = fill(case["expect"], places)
    error_lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if expected_exit == 0:
        kind = "clean" if result.returncode == 0 and expect in stderr else \
            "traceback" if "Traceback" in stderr else "garbage accepted"
    elif "Traceback" in stderr:
        kind = "traceback"
    elif result.returncode == 0:
        kind = "garbage accepted"
    elif (result.returncode == expected_exit and expect in stderr
          and (case.get("usage") or len(error_lines) == 1)):
        kind = "clean"
    else:
        kind = "imprecise"
    stale = [] if expected_exit == 0 else leftovers(tmp, places)
    changed = [k for k, v in snapshot(watched).items() if v != before[k]]
    if kind not in ("traceback", "garbage accepted") and (stale or changed):
        kind = "half-written"
    return {"rc": result.returncode, "stderr": stderr[-600:], "leftovers": stale + changed,
            "kind": kind}


def run_cases(cases: list[dict[str, Any]], resume: bool) -> list[dict[str, Any]]:
    from rich.progress import track

    places = fixtures()
    ROWS.mkdir(parents=True, exist_ok=True)
    rows = []
    http = [c for c in cases if c["command"] == "http"]
    server = running_server(places["run"], HERE / "server") if http else None
    try:
        for case in track(cases, description="bad inputs"):
            saved = ROWS / f"{case['id']}.json"
            if resume and saved.is_file():
                rows.append(json.loads(saved.read_text()))
                continue
            tmp = HERE / "cases" / case["id"]
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            here = {**places, "tmp": str(tmp), "config": str(tmp / "config.yaml")}
            prepare(case, tmp, here)
            outcome = (http_case(case, server) if case["command"] == "http"
                       else cli_case(case, here, tmp))
            row = {"id": case["id"], "command": case["command"], **outcome}
            saved.write_text(json.dumps(row, indent=2))
            rows.append(row)
        measured = resume and (HERE / "rss.json").is_file()
        growth = chunked_rss_growth_mb(server) if server and not measured else None
    finally:
        if server:
            server.stop()
    if growth is not None:
        (HERE / "rss.json").write_text(json.dumps(growth))
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = ["| command | cases | " + " | ".join(KINDS) + " |",
             "|---|---|" + "---|" * len(KINDS)]
    for command in [*commands, "all"]:
        mine = [r for r in rows if command in ("all", r["command"])]
        counts = Counter(r["kind"] for r in mine)
        lines.append(f"| {command} | {len(mine)} | " +
                     " | ".join(str(counts.get(k, 0)) for k in KINDS) + " |")
    bad = [r for r in rows if r["kind"] != "clean"]
    rss = json.loads((HERE / "rss.json").read_text()) if (HERE / "rss.json").is_file() else {}
    text = [
        "## Bad input (`python bench/bad_inputs.py`)", "",
        f"{len(rows)} cases from `bench/bad_inputs_cases.yaml`, each in a fresh folder, run "
        "as a user runs them: the `tunelab` command in a new process, or HTTP against a real "
        "`tunelab serve` (rate limit on, as deployed). *Clean*: the expected exit code (2, or "
        "the HTTP status) and one line naming the file, line or field (usage errors keep "
        "Click's few lines; HTTP errors a JSON body). *Half-written*: a run, partial folder, "
        "temporary file or changed output left behind after the failure.", "", *lines, ""]
    if rss:
        text.append(f"Server memory growth under three parallel 200 MB chunked bodies sent "
                    f"without a key: **{rss['growth_mb']:.1f} MB** (answers: "
                    f"{', '.join(rss['answers'])}; the key is checked before the body is "
                    "read). With a key, the same bodies grew it by "
                    f"{rss['with_key_growth_mb']:.1f} MB (answers: "
                    f"{', '.join(rss['with_key_answers'])}): the body is counted as it "
                    "arrives and refused past 1 MB.")
        text.append("")
    if bad:
        text += ["Cases that are not clean:", ""]
        text += [f"- `{r['id']}` ({r['kind']}): {r['stderr'].strip().splitlines()[-1][:200]}"
                 if r["stderr"].strip() else f"- `{r['id']}` ({r['kind']})" for r in bad]
    update_section("bad-inputs", "\n".join(text))
    counts = Counter(r["kind"] for r in rows)
    values: dict[str, Any] = {
        "bad_input_cases": len(rows), "bad_input_tracebacks": counts["traceback"],
        "bad_input_garbage_accepted": counts["garbage accepted"],
        "bad_input_half_written": counts["half-written"],
        "bad_input_imprecise": counts["imprecise"]}
    if rss:
        values["serve_chunked_rss_growth_mb"] = rss["growth_mb"]
    update_results(values)
    print("\n".join(lines))
    for r in bad:
        print(f"{r['id']}: {r['kind']}\n  {r['stderr'].strip()[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case ids")
    parser.add_argument("--resume", action="store_true", help="skip cases saved before")
    args = parser.parse_args()
    cases = yaml.safe_load(CASES.read_text())
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    if args.only:
        cases = [c for c in cases if c["id"] in args.only.split(",")]
    rows = run_cases(cases, args.resume)
    if not args.only:
        report(rows)
    else:
        for r in rows:
            print(f"{r['id']}: {r['kind']} rc={r.get('rc')}\n  {r['stderr'].strip()[-400:]}")


if __name__ == "__main__":
    main()
