"""The first hour of a new user, scripted: the README's commands in order on the shipped
examples, then every command-line slip, then the run kinds that load without tunelab.

    python bench/first_hour.py

- The walk runs in a fresh folder holding a copy of `examples/`, with a store of its own,
  calling the installed `tunelab` as a user would. Each step passes when it exits 0 and its
  output holds what the README says it shows; a training step also fails when its report
  carries a WARNING (the defaults did not beat a baseline).
- `cli_tracebacks`: the slips of tests/test_cli_slips.py (every command with no arguments,
  `--help`, an unknown option and a bad value), each in a process of its own, counting
  outputs with a Python traceback.
- `hf_loadable_kinds`: the run kinds (full, head, LoRA; single-label, multi-label, NER) whose
  test in tests/test_hf_loading.py passes: each loads with plain transformers or peft and
  gives `tunelab predict`'s labels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import ROOT, free_port, update_results, update_section

TUNELAB = str(Path(sys.executable).parent / "tunelab")
SENTIMENT = "runs/demo-sentiment"
# (README command as a user types it, the fragment its output must hold)
WALK: list[tuple[str, str]] = [
    ("tunelab --version", "tunelab "),
    ("tunelab init config.yaml", "wrote config.yaml"),
    ("tunelab train examples/sentiment/config.yaml --overwrite", "Test scores"),
    ("tunelab train examples/sentiment/config.yaml --set method=lora --set name=demo-lora "
     "--overwrite", "Test scores"),
    ("tunelab train examples/ner/config.yaml --overwrite", "Test scores"),
    (f"tunelab eval {SENTIMENT} --data examples/sentiment/test.csv", "accuracy"),
    (f'tunelab predict {SENTIMENT} "the delivery was late again"', '"label"'),
    (f"tunelab predict {SENTIMENT} --input texts.txt --output predictions.jsonl",
     "wrote 2 predictions"),
    (f"tunelab export {SENTIMENT}", "written to"),
    ("tunelab keys create --name frontend", ""),
    ("tunelab runs list", "demo-sentiment"),
    (f"tunelab runs compare {SENTIMENT} runs/demo-lora", "accuracy"),
    (f"tunelab models promote {SENTIMENT}", "production: demo-sentiment"),
    ("tunelab models list", "production"),
]


def run(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    done = subprocess.run(command.replace("tunelab ", f"{TUNELAB} ", 1), shell=True, cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


def serve_step(cwd: Path, env: dict[str, str], key: str) -> tuple[bool, str]:
    """`tunelab serve RUN --port P`, then one authorised prediction over HTTP."""
    port = free_port()
    server = subprocess.Popen([TUNELAB, "serve", SENTIMENT, "--port", str(port)], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/predict", data=json.dumps(
                {"texts": ["great value for money"]}).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": key})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
        return '"label"' in body, body[:200]
    except OSError as error:
        return False, str(error)
    finally:
        server.terminate()
        server.wait(timeout=30)


def walk() -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        shutil.copytree(ROOT / "examples", cwd / "examples")
        (cwd / "texts.txt").write_text("the delivery was late again\nlovely staff\n")
        env = {**os.environ, "TUNELAB_DB_URL": f"sqlite:///{cwd / 'store.db'}"}
        key = ""
        for command, wanted in WALK:
            code, output, seconds = run(command, cwd, env)
            if command.startswith("tunelab keys create"):
                key = output.strip().splitlines()[0] if output.strip() else ""
            warned = "Test scores" in output and "WARNING" in output
            ok = code == 0 and wanted in output and not warned
            rows.append({"step": command, "ok": ok, "seconds": round(seconds, 1),
                         "note": "" if ok else (output.strip().splitlines() or [""])[-1][:160]})
            print(("ok  " if ok else "FAIL"), command, flush=True)
        ok, note = serve_step(cwd, env, key)
        rows.append({"step": f"tunelab serve {SENTIMENT} --port PORT; POST /v1/predict",
                     "ok": ok, "seconds": 0.0, "note": "" if ok else note})
    return rows


def cli_tracebacks() -> tuple[int, int]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cli_slips import ALL

    tracebacks = 0
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "TUNELAB_DB_URL": f"sqlite:///{Path(folder) / 'store.db'}"}
        for call, _ in ALL:
            done = subprocess.run([TUNELAB, *call], cwd=folder, env=env, capture_output=True,
                                  text=True, timeout=120)
            tracebacks += "Traceback" in done.stdout + done.stderr
    return tracebacks, len(ALL)


def hf_loadable_kinds() -> tuple[int, int]:
    report = Path(tempfile.mkdtemp()) / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    str(ROOT / "tests/test_hf_loading.py"), "-k", "each_kind_of_run",
                    f"--junitxml={report}"], cwd=ROOT, capture_output=True, check=False)
    text = report.read_text() if report.exists() else ""
    total = text.count("<testcase ")
    failed = text.count("<failure") + text.count("<error") + text.count("<skipped")
    return total - failed, total


def main() -> None:
    rows = walk()
    tracebacks, slips = cli_tracebacks()
    loadable, kinds = hf_loadable_kinds()
    passed = sum(row["ok"] for row in rows)
    lines = ["Conditions: a fresh folder with a copy of `examples/` and its own SQLite store; "
             "the installed `tunelab` in a subprocess per command; the shipped example "
             "configs as they are.", "",
             "| step | ok | seconds | note |", "|---|---|---|---|"]
    lines += [f"| `{row['step']}` | {'yes' if row['ok'] else '**no**'} | {row['seconds']} | "
              f"{row['note'].replace('|', '/')} |" for row in rows]
    lines += ["", f"README walk: {passed} of {len(rows)} steps pass. Command-line slips: "
              f"{tracebacks} tracebacks in {slips} calls. Run kinds loadable without tunelab: "
              f"{loadable} of {kinds}."]
    update_results({"cli_tracebacks": tracebacks, "hf_loadable_kinds": loadable,
                    "readme_walk_steps_passed": passed, "readme_walk_steps": len(rows)})
    update_section("first_hour", "## The first hour of a new user "
                   "(`python bench/first_hour.py`)\n\n" + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
