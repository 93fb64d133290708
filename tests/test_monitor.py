"""Drift monitoring: PSI on label and confidence distributions, and `tunelab monitor`
against a running service."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
from conftest import ROOT, free_port
from test_serving import api_key, auth, served_run, start_server  # noqa: F401

from tunelab.monitoring.drift import compare, count_predictions


def predictions(labels: dict[str, int], score: float = 0.9) -> list[dict[str, object]]:
    return [{"label": label, "score": score} for label, n in labels.items() for _ in range(n)]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    reference = count_predictions(predictions({"a": 50, "b": 50}))
    same = compare(reference, count_predictions(predictions({"a": 500, "b": 500})))
    assert same.label_psi < 1e-9 and same.confidence_psi < 1e-9
    shifted = compare(reference, count_predictions(predictions({"a": 95, "b": 5}, score=0.55)))
    assert shifted.label_psi > 0.2 and shifted.confidence_psi > 0.2
    assert shifted.per_label[0][0] in {"a", "b"} and shifted.n_current == 100
    unseen = compare(reference, count_predictions(predictions({"a": 50, "b": 40, "c": 10})))
    assert unseen.per_label[0][0] == "c"  # a label never seen before


def test_monitor_flags_drift_exits_3_and_calls_the_webhook(
        served_run: Path, api_key: str) -> None:  # noqa: F811
    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    process, url = start_server(served_run)

    def monitor(port: int = hook.server_port) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tunelab.cli", "monitor", str(served_run), "--url", url,
             "--key", api_key, "--min-predictions", "20", "--webhook",
             f"http://127.0.0.1:{port}/alert"],
            capture_output=True, text=True, cwd=ROOT)

    try:
        test_rows = [json.loads(line) for line in
                     (served_run / "predictions.jsonl").read_text().splitlines()]
        for _ in range(2):  # the held-out texts themselves: the same distribution
            httpx.post(f"{url}/v1/predict", json={"texts": [r["text"] for r in test_rows]},
                       headers=auth(api_key), timeout=60)
        calm = monitor()
        assert calm.returncode == 0, calm.stdout + calm.stderr
        assert "no drift" in calm.stdout and not received
        positive = [r["text"] for r in test_rows if r["label"] == "positive"]
        for _ in range(10):  # now only texts the model calls positive
            httpx.post(f"{url}/v1/predict", json={"texts": positive}, headers=auth(api_key),
                       timeout=60)
        drifted = monitor()
        assert drifted.returncode == 3, drifted.stdout + drifted.stderr
        assert "PSI labels" in drifted.stdout
        assert received and received[0]["top_shifts"]
        assert '"msg": "drift"' in drifted.stderr
        down = monitor(port=free_port())  # a webhook that is down: still exit 3, no traceback
        assert down.returncode == 3 and "Traceback" not in down.stderr, down.stderr
        assert "webhook" in down.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        hook.shutdown()
