"""The service's front door and overload behaviour: keys and body limits before the body
is read, bad texts isolated to their own request, a bounded queue, pair models."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_csv
from fastapi.testclient import TestClient
from test_serving import TEXTS, auth, client, served_run  # noqa: F401

import tunelab
from tunelab.config import parse_config
from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.batcher import MicroBatcher, QueueFull
from tunelab.serving.keys import create_key


@pytest.fixture(scope="module")
def api_key() -> str:
    return create_key(f"guard-{time.monotonic_ns()}")


def call_asgi(app: Any, headers: dict[str, str], chunks: int, chunk_size: int = 65536
              ) -> tuple[int, int]:
    """POST a chunked body straight to the ASGI app; (status, chunks the app pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk_size,
                "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/predict", "raw_path":
             b"/v1/predict", "query_string": b"", "root_path": "", "client": ("10.0.0.1", 1),
             "server": ("127.0.0.1", 8000),
             "headers": [(b"transfer-encoding", b"chunked"),
                         (b"content-type", b"application/json"),
                         *[(k.lower().encode(), v.encode()) for k, v in headers.items()]]}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], pulled


def test_no_key_is_refused_before_a_single_body_byte_is_read(served_run: Path,  # noqa: F811
                                                             api_key: str) -> None:
    app = create_app(ServeSettings(run=served_run, max_body_bytes=1_000_000))
    status, pulled = call_asgi(app, {}, chunks=3200)  # a 200 MB chunked body
    assert (status, pulled) == (401, 0)
    # with a key, reading stops at the limit: about 1 MB, not 200
    status, pulled = call_asgi(app, auth(api_key), chunks=3200)
    assert status == 413 and pulled <= 1_000_000 // 65536 + 1


def test_a_lone_surrogate_gets_422_for_its_own_request_only(served_run: Path,  # noqa: F811
                                                            api_key: str) -> None:
    with client(served_run) as http:
        bad = http.post("/v1/predict", content=b'{"texts": ["\\ud800 x"]}',
                        headers={**auth(api_key), "content-type": "application/json"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["message"].startswith("texts.0: ")
        nul = http.post("/v1/predict", json={"texts": ["a\x00b"]}, headers=auth(api_key))
        assert nul.status_code == 422 and "NUL" in nul.text


def test_a_failing_batch_is_retried_per_request() -> None:
    def predict(items: list[str]) -> list[str]:
        time.sleep(0.02)
        if "bad" in items:
            raise ValueError("cannot tokenise")
        return [item.upper() for item in items]

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_batch_size=64, max_wait_ms=200)
        batcher.start()
        requests = [["good"], ["bad"], ["fine", "ok"], ["also good"]] * 3
        results = await asyncio.gather(*(batcher.submit(r) for r in requests),
                                       return_exceptions=True)
        await batcher.stop()
        return list(zip(requests, results, strict=True))

    for request, result in asyncio.run(main()):
        if request == ["bad"]:
            assert isinstance(result, ValueError)
        else:
            assert result == [item.upper() for item in request]


def test_a_full_queue_answers_at_once_instead_of_waiting() -> None:
    def slow(items: list[str]) -> list[str]:
        time.sleep(0.3)
        return items

    async def main() -> tuple[list[Any], float]:
        batcher = MicroBatcher(slow, max_batch_size=2, max_wait_ms=0, max_queue=4)
        batcher.start()
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(8)),
                                       return_exceptions=True)
        await batcher.stop()
        return results, time.perf_counter() - started

    results, _ = asyncio.run(main())
    full = [r for r in results if isinstance(r, QueueFull)]
    assert len(full) == 4 and all(isinstance(r, list) for r in results[:4])


def test_http_503_with_retry_after_when_the_queue_is_full(served_run: Path,  # noqa: F811
                                                          api_key: str) -> None:
    import threading

    statuses: list[tuple[int, str | None]] = []
    with client(served_run, max_queue=1, max_wait_ms=300, rate_limit=0) as http:
        def call() -> None:
            response = http.post("/v1/predict", json={"texts": TEXTS[:1]},
                                 headers=auth(api_key))
            statuses.append((response.status_code, response.headers.get("retry-after")))

        threads = [threading.Thread(target=call) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    codes = {code for code, _ in statuses}
    assert codes <= {200, 503} and 503 in codes and 200 in codes
    assert all(after == "1" for code, after in statuses if code == 503)


def test_headers_and_bodies_that_used_to_slip_through(served_run: Path,  # noqa: F811
                                                      api_key: str) -> None:
    with client(served_run) as http:
        long_id = http.post("/v1/predict", json={"texts": TEXTS},
                            headers={**auth(api_key), "X-Request-ID": "a" * 100_000})
        assert long_id.status_code == 200 and len(long_id.headers["x-request-id"]) == 32
        kept = http.post("/v1/predict", json={"texts": TEXTS},
                         headers={**auth(api_key), "X-Request-ID": "order-42"})
        assert kept.headers["x-request-id"] == "order-42"
        nested = http.post("/v1/predict", content=b"[" * 100_000 + b"]" * 100_000,
                           headers={**auth(api_key), "content-type": "application/json"})
        assert nested.status_code == 422, nested.text
        schema = http.get("/openapi.json").json()
        metrics_doc = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(metrics_doc) == ["text/plain; version=0.0.4; charset=utf-8"] or \
            all("json" not in kind for kind in metrics_doc)
        text_schema = json.dumps(schema["components"]["schemas"]["PredictRequest"])
        assert '"minLength": 1' in text_schema and "\\\\S" in text_schema


def test_failed_key_checks_are_rate_limited_per_address(served_run: Path  # noqa: F811
                                                        ) -> None:
    with client(served_run) as http:
        codes = [http.post("/v1/predict", json={"texts": TEXTS},
                           headers={"Authorization": f"Bearer tl_x_guess{i}"}).status_code
                 for i in range(40)]
    assert codes[:20] == [401] * 20 and codes[-1] == 429


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from conftest import sentiment_rows

    tmp = tmp_path_factory.mktemp("pairs")
    files = {}
    for split, n, seed in (("train", 64, 1), ("dev", 16, 2), ("test", 16, 3)):
        rows = [(text, "the plot", label) for text, label in sentiment_rows(n, seed)]
        files[split] = str(write_csv(tmp / f"{split}.csv", rows, ("first", "second", "label")))
    config = parse_config({
        "name": "pairs", "output_dir": str(tmp / "runs"), "seed": 7, "threads": 1,
        "model": {"name": str(tiny_model_dir)},
        "data": {**files, "text_column": "first", "text_pair_column": "second",
                 "max_length": 32},
        "training": {"epochs": 1, "batch_size": 8}, "evaluation": {"baselines": False}})
    return tunelab.train(config).run_dir


def test_a_pair_model_takes_pairs_and_refuses_single_texts(pair_run: Path, api_key: str
                                                           ) -> None:
    from tunelab.errors import DataError

    model = tunelab.load(pair_run)
    assert model.takes_pairs
    with pytest.raises(DataError, match="trained on text pairs"):
        model.predict(["just one text"])
    pairs = [["great movie", "the plot"], ["awful movie", "the plot"]]
    expected = model.predict(pairs)
    single = model.predict(("great movie", "the plot"))
    # alone or padded in a batch of two: the same answer, up to float noise
    assert single["label"] == expected[0]["label"]
    assert single["probabilities"] == pytest.approx(expected[0]["probabilities"], abs=1e-4)
    with TestClient(create_app(ServeSettings(run=pair_run))) as http:
        refused = http.post("/v1/predict", json={"texts": ["one"]}, headers=auth(api_key))
        assert refused.status_code == 422 and "pairs" in refused.text
        answered = http.post("/v1/predict", json={"pairs": pairs}, headers=auth(api_key))
        assert answered.status_code == 200, answered.text
        assert answered.json()["predictions"] == expected
        both = http.post("/v1/predict", json={"texts": ["a"], "pairs": pairs},
                         headers=auth(api_key))
        assert both.status_code == 422


def test_a_single_text_model_refuses_pairs(served_run: Path, api_key: str  # noqa: F811
                                           ) -> None:
    with client(served_run) as http:
        response = http.post("/v1/predict", json={"pairs": [["a", "b"]]},
                             headers=auth(api_key))
        assert response.status_code == 422 and "single texts" in response.text


def test_the_rate_limiter_admits_exactly_its_burst_across_threads() -> None:
    import threading

    from tunelab.serving.limits import RateLimiter

    limiter = RateLimiter(rate=0.001, burst=100)
    admitted: list[int] = []

    def hammer() -> None:
        admitted.append(sum(limiter.check("key") == 0.0 for _ in range(2000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 100


def test_the_model_version_is_a_hash_of_the_weights_not_of_their_dates(
        served_run: Path, tmp_path: Path) -> None:  # noqa: F811
    import os
    import shutil

    from tunelab.serving.app import model_version

    copy = tmp_path / "copy"
    shutil.copytree(served_run, copy)
    for file in (copy / "model").iterdir():
        os.utime(file, (1, 1))  # other dates, same bytes
    original, copied = tunelab.load(served_run, "torch"), tunelab.load(copy, "torch")
    assert model_version(original) == model_version(copied)
    weights = copy / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_version(tunelab.load(copy, "torch")) != model_version(original)
