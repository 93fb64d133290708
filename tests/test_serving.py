"""The HTTP service, in-process (TestClient) and as a real `tunelab serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, free_port, sentiment_rows, write_csv
from fastapi.testclient import TestClient

import tunelab
from tunelab.config import parse_config
from tunelab.record import RunRecord
from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.batcher import MicroBatcher
from tunelab.serving.keys import create_key

TEXTS = ["the movie was great", "awful acting and a poor plot", "really superb", "sad and bad"]
BULK = 3000  # texts in each bulk request of the drain test


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("served")
    files = {split: write_csv(tmp / f"{split}.csv", sentiment_rows(n, seed))
             for split, n, seed in (("train", 96, 1), ("dev", 24, 2), ("test", 24, 3))}
    config = parse_config({
        "name": "served", "output_dir": str(tmp / "runs"), "seed": 7, "threads": 1,
        "model": {"name": str(tiny_model_dir)},
        "data": {k: str(v) for k, v in files.items()} | {"max_length": 32},
        "training": {"epochs": 8, "batch_size": 8, "lr": 2e-3, "early_stopping": {"patience": 4}},
        "evaluation": {"baselines": False},
    })
    return tunelab.train(config).run_dir


@pytest.fixture(scope="module")
def api_key() -> str:
    """A key in the session's store."""
    return create_key(f"tests-{time.monotonic_ns()}")


def client(run: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(ServeSettings(run=run, **settings)))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_predict_needs_a_key_and_open_endpoints_do_not(served_run: Path,
                                                       api_key: str) -> None:
    with client(served_run) as http:
        for headers in ({}, {"Authorization": "Bearer tl_dead_beef"}, {"X-API-Key": "wrong"}):
            response = http.post("/v1/predict", json={"texts": TEXTS}, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        assert http.get("/v1/model").status_code == 401
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert http.get(path).status_code == 200, path
        page = http.get("/docs").text  # offline: Swagger UI from the package, not a CDN
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page
        script = http.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text
        assert http.get("/docs/assets/../../v1/model").status_code in (401, 404)

        response = http.post("/v1/predict", json={"texts": TEXTS}, headers=auth(api_key))
        assert response.status_code == 200
        body = response.json()
        assert response.headers["x-request-id"] == body["request_id"]
        expected = tunelab.load(served_run).predict(TEXTS)
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
        x_api_key = {"X-API-Key": api_key}
        info = http.get("/v1/model", headers=x_api_key).json()
        assert info["labels"] == ["negative", "positive"] and info["version"] == body["model"]


def test_limits_and_bad_input_get_json_errors_not_500(served_run: Path,
                                                      api_key: str) -> None:
    with client(served_run, max_texts=3, max_chars=50, max_body_bytes=5000) as http:
        headers = auth(api_key)
        cases = [
            ({"json": {"texts": TEXTS}}, 413, "at most 3 per request"),
            ({"json": {"texts": ["x" * 51]}}, 422, "texts.0: 51 characters"),
            ({"json": {"texts": []}}, 422, "texts"),
            ({"json": {"texts": ["fine", "  "]}}, 422, "texts.1: empty text"),
            ({"json": {"texts": "not a list"}}, 422, "texts"),
            ({"json": {"wrong": 1}}, 422, "texts"),
            ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ""),
            ({"content": b"x" * 6000, "headers": {"content-type": "application/json"}}, 413,
             "over 5000 bytes"),
        ]
        for kwargs, status, message in cases:
            extra = kwargs.pop("headers", {})
            response = http.post("/v1/predict", headers={**headers, **extra}, **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            assert message in response.json()["error"]["message"]


def test_rate_limit_answers_429_per_key(served_run: Path, api_key: str) -> None:
    with client(served_run, rate_limit=0.5, rate_burst=2) as http:
        codes = [http.post("/v1/predict", json={"texts": ["good"]}, headers=auth(api_key))
                 .status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = http.post("/v1/predict", json={"texts": ["good"]}, headers=auth(api_key))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_micro_batcher_gathers_requests_and_returns_each_its_own() -> None:
    batches: list[list[str]] = []

    def predict(items: list[str]) -> list[str]:
        batches.append(list(items))
        time.sleep(0.01)
        return [item.upper() for item in items]

    async def main() -> list[list[str]]:
        batcher = MicroBatcher(predict, max_batch_size=8, max_wait_ms=20)
        batcher.start()
        requests = [[f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"] for i in range(12)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.stop()
        for request, result in zip(requests, results, strict=True):
            assert result == [item.upper() for item in request]
        return batches

    asyncio.run(main())
    assert sum(len(b) for b in batches) == 18
    assert max(len(b) for b in batches) > 2, "concurrent requests were not batched"
    assert all(len(b) <= 9 for b in batches)  # one job may top a batch up past the limit


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def main() -> float:
        batcher = MicroBatcher(lambda items: items, max_batch_size=8, max_wait_ms=2000)
        batcher.start()
        started = time.perf_counter()
        assert await batcher.submit(["alone"]) == ["alone"]
        took = time.perf_counter() - started
        await batcher.stop()
        return took

    assert asyncio.run(main()) < 1.0  # the 2 s wait applies only with others in flight


def test_metrics_count_requests_batches_and_labels(served_run: Path,
                                                   api_key: str) -> None:
    with client(served_run) as http:
        http.post("/v1/predict", json={"texts": TEXTS}, headers=auth(api_key))
        http.post("/v1/predict", json={"texts": TEXTS})
        text = http.get("/metrics").text
    assert 'tunelab_requests_total{path="/v1/predict",status="200"} 1.0' in text
    assert 'tunelab_requests_total{path="/v1/predict",status="401"} 1.0' in text
    assert "tunelab_batch_size_count 1.0" in text
    labelled = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("tunelab_predicted_labels_total{"))
    assert labelled == len(TEXTS)
    assert 'tunelab_model_info{backend="torch"' in text
    assert "tunelab_request_seconds_bucket" in text


def start_server(run: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "serve", str(run), "--port", str(port),
         *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240  # a loaded CI machine imports torch slowly
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise AssertionError(process.stderr.read())
    process.kill()
    raise AssertionError("server did not become ready")


def in_flight(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics").text
    return float(metrics.split("\ntunelab_predictions_in_flight ")[1].split()[0])


def test_real_server_batches_concurrent_clients_and_drains_on_sigterm(
        served_run: Path, api_key: str) -> None:
    process, url = start_server(served_run, "--max-wait-ms", "800", "--max-batch-size", "64",
                                "--max-texts", str(BULK), "--max-queue", str(100 * BULK),
                                "--max-body-bytes", "4000000")
    # The tiny model answers a short text in microseconds, so single-text clients alone rarely
    # overlap. Bulk requests of long texts keep the model busy while the others queue behind.
    long_texts = [f"{text} " * 12 for text in TEXTS]
    expected = {t: p["label"] for t, p in zip(TEXTS + long_texts, tunelab.load(served_run)
                                                .predict(TEXTS + long_texts), strict=True)}
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        texts = [long_texts[j % len(TEXTS)] for j in range(BULK)] if i % 17 == 0 \
            else [TEXTS[i % len(TEXTS)]]
        response = httpx.post(f"{url}/v1/predict", json={"texts": texts},
                              headers=auth(api_key), timeout=60)
        results[i] = (texts, response.status_code, response.json())

    threads: list[threading.Thread] = []
    try:
        deadline = time.time() + 60
        waiting_at_sigterm = 0.0
        while time.time() < deadline and waiting_at_sigterm < 2:
            wave = [threading.Thread(target=call, args=(len(threads) + i,)) for i in range(34)]
            threads += wave
            for thread in wave:
                thread.start()
            while time.time() < deadline and len(results) < len(threads):
                waiting_at_sigterm = in_flight(url)
                if waiting_at_sigterm >= 2:
                    break
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        # uvicorn drains, then re-raises SIGTERM so supervisors see the usual exit status
        assert process.wait(30) in (0, -signal.SIGTERM)
    finally:
        process.kill()
    assert waiting_at_sigterm >= 2, "SIGTERM came with no requests in flight: nothing drained"
    assert len(results) == len(threads)
    for texts, status, body in results.values():
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == [expected[t] for t in texts]
    logs = [json.loads(line) for line in process.stderr.read().splitlines()
            if line.startswith("{")]
    requests = [row for row in logs if row["msg"] == "request"]
    assert len(requests) >= len(threads) and all(row["request_id"] for row in requests)
    assert not any("texts" in row for row in requests), "raw texts are not logged by default"
    assert logs[-1]["msg"] == "stopped"


def test_schemathesis_finds_no_server_errors(served_run: Path,
                                             api_key: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    process, url = start_server(served_run)
    try:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        failures = []
        for result in schema.get_all_operations():
            operation = result.ok()
            strategy = operation.as_strategy()

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def check(case: Any) -> None:
                for headers in (auth(api_key), {}):
                    case.call_and_validate(base_url=url, headers=headers,
                                           checks=[not_a_server_error])

            try:
                check()
            except Exception as error:  # collect, so that the message names each operation
                failures.append(f"{operation.label}: {error}")
        assert not failures, failures
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_ner_run_serves_entities_with_offsets(tiny_config: dict[str, Any], tmp_path: Path,
                                              api_key: str) -> None:
    from test_token_classification import conll_file

    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    run = tunelab.train(parse_config({**tiny_config, "task": {"type": "token-classification"},
                                      "data": {**files, "max_length": 16}})).run_dir
    sentence = "Anna visited great Paris ."
    with client(run) as http:
        response = http.post("/v1/predict", json={"texts": [sentence]}, headers=auth(api_key))
        assert response.status_code == 200
        [prediction] = response.json()["predictions"]
        expected = tunelab.load(run).predict(sentence)
        assert prediction["entities"] == expected["entities"]
        assert prediction["entities"], "no entity predicted: the offsets below check nothing"
        for entity in prediction["entities"]:
            assert sentence[entity["start"]:entity["end"]] == entity["text"]
        info = http.get("/v1/model", headers=auth(api_key)).json()
        assert info["task"] == "token-classification" and "B-PER" in info["labels"]


def test_feedback_round_trip(served_run: Path, store_url: str, tmp_path: Path) -> None:
    import csv

    api_key = create_key("feedback")
    with client(served_run) as http:
        body = {"text": "the acting was superb", "predicted": "negative",
                "correct_label": "positive", "request_id": "abc"}
        assert http.post("/v1/feedback", json=body).status_code == 401
        stored = http.post("/v1/feedback", json=body, headers=auth(api_key))
        assert stored.status_code == 201, stored.text
        bad = http.post("/v1/feedback", json={**body, "correct_label": "postive"},
                        headers=auth(api_key))
        assert bad.status_code == 422 and "'postive' is not one of" in bad.text
        version = http.get("/v1/model", headers=auth(api_key)).json()["version"]
    assert stored.json()["model"] == version
    out = tmp_path / "feedback.csv"
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "feedback", "export",
                             "--output", str(out), "--run", str(served_run)],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TUNELAB_DB_URL": store_url})
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["text"], r["label"], r["predicted"]) for r in rows] == \
        [("the acting was superb", "positive", "negative")]


def test_promotion_and_rollback_hot_swap_under_load_without_a_failed_request(
        served_run: Path, store_url: str, tiny_config: dict[str, Any]) -> None:
    from tunelab.store import records

    api_key = create_key("swap")
    second = tunelab.train(parse_config({**tiny_config, "name": "second", "seed": 8})).run_dir
    for run in (served_run, second):
        records.record_run(run, RunRecord.read(run))
    records.promote(str(served_run))
    statuses: list[int] = []
    versions: list[str] = []
    done = threading.Event()
    with client(served_run, follow_production=True, poll_seconds=0.1, rate_limit=0) as http:

        def load() -> None:
            while not done.is_set():
                response = http.post("/v1/predict", json={"texts": TEXTS},
                                     headers=auth(api_key))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model"])

        def wait_for(condition: Any) -> None:
            deadline = time.time() + 60
            while time.time() < deadline and not (versions and condition(versions[-1])):
                time.sleep(0.05)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            wait_for(lambda version: True)
            first = versions[0]
            records.promote(str(second))
            wait_for(lambda version: version != first)
            after_promotion = http.get("/v1/model", headers=auth(api_key)).json()
            records.rollback()
            wait_for(lambda version: version == first)
            time.sleep(0.5)
        finally:
            done.set()
            worker.join()
        after_rollback = http.get("/v1/model", headers=auth(api_key)).json()
    assert statuses and set(statuses) == {200}
    assert (after_promotion["run"], after_rollback["run"]) == ("second", served_run.name)
    swaps = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert swaps == [first, after_promotion["version"], first]


def test_serve_without_any_key_refuses_to_start_with_one_line(served_run: Path, tmp_path: Path
                                                              ) -> None:
    result = subprocess.run([sys.executable, "-m", "tunelab.cli", "serve", str(served_run)],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ,
                                 "TUNELAB_DB_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode == 2
    assert "no API keys in the store" in result.stderr and "keys create" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_busy_port_is_one_line_before_the_model_loads(served_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tunelab.cli", "serve", str(served_run),
                                 "--no-auth", "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_ready_log_line_says_where_the_service_listens(served_run: Path) -> None:
    process, url = start_server(served_run, "--no-auth")
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    ready = next(json.loads(line) for line in stderr.splitlines()
                 if line.startswith("{") and '"ready"' in line)
    assert ready["url"] == url


def test_workers_read_the_settings_the_command_was_given(served_run: Path) -> None:
    """With --workers 2 each uvicorn worker rebuilds the settings from the environment
    (pydantic-settings): the limits given on the command line hold in every worker."""
    process, url = start_server(served_run, "--workers", "2", "--no-auth", "--max-texts", "3",
                                "--rate-limit", "0", "--explain-max-chars", "500")
    try:
        pids = set()
        for _ in range(200):  # each request a new connection, taken by either worker
            info = httpx.get(f"{url}/v1/monitor", timeout=10).json()
            limits = httpx.get(f"{url}/v1/model", timeout=10).json()["limits"]
            assert limits == {"max_texts": 3, "max_chars": 2000, "explain_max_chars": 500,
                              "rate_limit_per_worker": 0.0}
            pids.add(info["worker_pid"])
            if len(pids) == 2:
                break
        too_many = httpx.post(f"{url}/v1/predict", json={"texts": ["a", "b", "c", "d"]},
                              timeout=30)
        assert too_many.status_code == 413 and "at most 3" in too_many.text
        assert len(pids) == 2, "both workers answered"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_a_zero_shot_service_takes_labels_per_request(tmp_path: Path, api_key: str) -> None:
    from test_few_labels import zero_shot_config

    from tunelab.config import parse_config

    run = tunelab.train(parse_config(zero_shot_config(tmp_path))).run_dir
    with client(run, backend="torch") as http:
        body = {"texts": ["it will rain all weekend"], "labels": ["weather", "sports"]}
        response = http.post("/v1/predict", json=body, headers=auth(api_key))
        assert response.status_code == 200
        assert response.json()["predictions"][0]["label"] == "weather"
        body["labels"] = ["weather", "weather"]
        response = http.post("/v1/predict", json=body, headers=auth(api_key))
        assert response.status_code == 422 and "listed twice" in response.text
