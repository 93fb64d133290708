"""The service's front door, as pure ASGI: a request id, the API key and its rate limit
checked from the headers, then the body read with a byte cap. All of it happens before
FastAPI reads or parses anything, so a client without a key, or with a body of any size
(chunked or not), costs the server at most `max_body_bytes` of memory.

It also logs each request as one JSON line and counts it in the Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tunelab.serving.keys import KeyCache
from tunelab.serving.limits import RateLimiter
from tunelab.serving.observability import ServiceMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json",
                        "/docs/oauth2-redirect"})
OPEN_PREFIX = "/docs/assets/"  # Swagger UI's own files (serving/docs.py)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Failed key checks allowed per client address: a burst, then one per second.
FAILED_AUTH_RATE, FAILED_AUTH_BURST = 1.0, 20


def clean_request_id(value: str | None) -> str:
    """The client's X-Request-ID if it is a short token; otherwise a fresh one, so a
    100 KB or multi-line header is never echoed or logged."""
    return value if value and REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


def presented_key(headers: dict[str, str]) -> str | None:
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get("x-api-key")


async def send_error(send: Send, status: int, code: str, message: str, request_id: str,
                     headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message},
                       "request_id": request_id}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"x-request-id", request_id.encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class RequestGuard:
    def __init__(self, app: ASGIApp, *, keys: KeyCache | None, limiter: RateLimiter,
                 max_body_bytes: int, metrics: ServiceMetrics, log: logging.Logger,
                 known_paths: Callable[[], set[str]]) -> None:
        self.app, self.keys, self.limiter = app, keys, limiter
        self.max_body_bytes, self.metrics, self.log = max_body_bytes, metrics, log
        self.failed_auth = RateLimiter(FAILED_AUTH_RATE, FAILED_AUTH_BURST)
        self.known_paths = known_paths  # read once, on the first request that needs it
        self._known: set[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        request_id = clean_request_id(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"], state["log_fields"] = request_id, {}
        status = {"code": 500, "started": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message["headers"] = [*[(k, v) for k, v in message.get("headers", [])
                                        if k.lower() != b"x-request-id"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            self.admit(scope, headers, state)
            body_receive = await self.read_body(scope, receive, headers)
            await self.app(scope, body_receive, send_tracked)
        except Rejected as rejected:
            status["code"] = rejected.status
            await send_error(send, rejected.status, rejected.code, rejected.message, request_id,
                             rejected.headers)
        except _Disconnected:
            status["code"] = 499
        except Exception:
            self.log.exception("unhandled", extra={"fields": {"request_id": request_id}})
            status["code"] = 500
            if not status["started"]:
                await send_error(send, 500, "internal", "internal error", request_id)
        self.record(scope, request_id, status["code"], time.perf_counter() - started, state)

    def admit(self, scope: Scope, headers: dict[str, str], state: dict[str, Any]) -> None:
        """Check the key and its rate limit from the headers alone."""
        if self.keys is None or scope["path"] in OPEN_PATHS or \
                scope["path"].startswith(OPEN_PREFIX):
            return
        client = (scope.get("client") or ("?", 0))[0]
        if self.failed_auth.exhausted(client):
            raise Rejected(429, "rate_limited", "too many failed key checks from this "
                           "address; wait before retrying", {"Retry-After": "1"})
        key = self.keys.verify(presented_key(headers))
        if key is None:
            self.failed_auth.check(client)
            raise Rejected(401, "unauthorized", "missing or invalid API key; send "
                           "Authorization: Bearer KEY (create one with `tunelab keys create "
                           "--name NAME`)", {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.check(key.key_id)
        if wait:
            raise Rejected(429, "rate_limited", f"rate limit of {self.limiter.rate:g} "
                           f"requests/s for key '{key.name}' exceeded; retry after {wait:.2f} s",
                           {"Retry-After": str(max(1, round(wait)))})
        state["key"] = key
        state["log_fields"] = {"key": key.name}

    async def read_body(self, scope: Scope, receive: Receive, headers: dict[str, str]
                        ) -> Receive:
        """Read the whole body, counting bytes as they arrive; a receive that replays it."""
        limit = self.max_body_bytes
        too_large = Rejected(413, "body_too_large", f"request body over {limit} bytes")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return receive
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return replay

    def known(self) -> set[str]:
        if self._known is None:
            self._known = self.known_paths()
        return self._known

    def record(self, scope: Scope, request_id: str, status: int, elapsed: float,
               state: dict[str, Any]) -> None:
        route = scope.get("route")
        path = (route.path if route is not None else scope["path"]
                if scope["path"] in self.known() else "unmatched")
        self.metrics.requests.labels(path, str(status)).inc()
        self.metrics.latency.labels(path).observe(elapsed)
        fields = {"request_id": request_id, "method": scope["method"], "path": scope["path"],
                  "status": status, "ms": round(elapsed * 1000, 2), **state.get("log_fields", {})}
        self.log.info("request", extra={"fields": fields})


class _Disconnected(Exception):
    """The client went away before its body arrived."""
