"""The HTTP half of the bad-input corpus: a real `tunelab serve` process, one request per
case, and the server's memory under chunked bodies sent without a key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import free_port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    key: str

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def running_server(run: str, folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TUNELAB_DB_URL": f"sqlite:///{folder / 'store.db'}"}
    cli = [sys.executable, "-m", "tunelab.cli"]
    subprocess.run([*cli, "keys", "revoke", "bench"], env=env, capture_output=True)
    key = subprocess.run([*cli, "keys", "create", "--name", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    port = free_port()
    process = subprocess.Popen([*cli, "serve", run, "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Server(process, url, key)
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("tunelab serve did not become ready")


def chunks(megabytes: float, size: int = 65536) -> Iterator[bytes]:
    block = b"x" * size
    for _ in range(int(megabytes * 1024 * 1024 / size)):
        yield block


def expand(value: Any) -> Any:
    """'@long:N' -> N characters, '@many:N' -> N texts."""
    if isinstance(value, str) and value.startswith("@long:"):
        return "x" * int(value.split(":")[1])
    if isinstance(value, str) and value.startswith("@many:"):
        return ["hi"] * int(value.split(":")[1])
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def raw_body(raw: str) -> bytes:
    kind, _, n = raw.partition(":")
    if kind == "@nested":
        return b"[" * int(n) + b"]" * int(n)
    if kind == "@pad":
        return b'{"texts": ["' + b"x" * int(n) + b'"]}'
    return raw.encode("utf-8")


def http_case(case: dict[str, Any], server: Server) -> dict[str, Any]:
    method, path = case["args"]
    headers = {"content-type": "application/json"}
    key = case.get("key", True)
    if key is True:
        headers["authorization"] = f"Bearer {server.key}"
    elif key:
        headers["authorization"] = f"Bearer {key}"
    sent_id = expand(case.get("request_id")) if case.get("request_id") else None
    if sent_id:
        headers["x-request-id"] = sent_id
    content: Any = None
    if "chunked_mb" in case:
        content = chunks(case["chunked_mb"])
    elif "raw" in case:
        content = raw_body(case["raw"])
    elif "body" in case:
        content = json.dumps(expand(case["body"])).encode()
    try:
        response = httpx.request(method, server.url + path, headers=headers, content=content,
                                 timeout=60)
    except httpx.HTTPError as error:  # the server hung up on a body it refused
        return {"status": None, "stderr": f"connection: {error}", "kind": "imprecise"}
    expected = case["exit"]
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = json.dumps(body)[:300] if body is not None else response.text[:300]
    if response.status_code >= 500:
        kind = "traceback"
    elif expected >= 400 and response.status_code < 400:
        kind = "garbage accepted"
    elif response.status_code != expected:
        kind = "imprecise"
    elif expected >= 400:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        kind = "clean" if error.get("code") and error.get("message") else "imprecise"
    else:
        echoed = response.headers.get("x-request-id", "")
        kind = "garbage accepted" if sent_id and (echoed == sent_id or len(echoed) > 128) \
            else "clean"
    return {"status": response.status_code, "stderr": f"{response.status_code} {detail}",
            "kind": kind}


def chunked_rss_growth_mb(server: Server, bodies: int = 3, megabytes: int = 200
                          ) -> dict[str, Any]:
    """Peak growth of the server's resident memory while `bodies` clients each send a
    chunked body of `megabytes` MB, without a key and then with one; and what they got."""
    out: dict[str, Any] = {}
    for label, headers in (("", {}), ("with_key_", {"authorization": f"Bearer {server.key}"})):
        growth, answers = _growth(server, bodies, megabytes, headers)
        out[f"{label}growth_mb"], out[f"{label}answers"] = round(growth, 1), answers
    return out


def _growth(server: Server, bodies: int, megabytes: int, headers: dict[str, str]
            ) -> tuple[float, list[str]]:
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    peak = before
    done = threading.Event()
    answers: list[str] = []

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    def send() -> None:
        started = time.perf_counter()
        try:  # the server may hang up after its answer, before the body is all sent
            status = str(httpx.post(f"{server.url}/v1/predict", content=chunks(megabytes),
                                    timeout=120, headers={"content-type": "application/json",
                                                          **headers}).status_code)
        except httpx.HTTPError as error:
            status = f"connection closed ({type(error).__name__})"
        answers.append(f"{status} after {time.perf_counter() - started:.2f} s")

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send) for _ in range(bodies)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    time.sleep(0.5)
    done.set()
    watcher.join()
    return (peak - before) / 2**20, answers
