"""The FastAPI application: predict, model info, health, readiness and metrics.

Every endpoint but health and metrics needs an API key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`). Errors are JSON: {"error": {"code", "message"}, "request_id"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelab.errors import TunelabError
from tunelab.monitoring.drift import RollingWindow
from tunelab.serving.batcher import MicroBatcher
from tunelab.serving.keys import KeyCache, StoredKey
from tunelab.serving.limits import RateLimiter
from tunelab.serving.observability import ServiceMetrics, json_logger

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"}


@dataclass
class ServeSettings:
    run: Path
    backend: str = "auto"
    auth: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_texts: int = 64
    max_chars: int = 2000
    max_body_bytes: int = 1_000_000
    rate_limit: float = 100.0  # requests per second per key; 0 turns the limit off
    rate_burst: int = 200
    log_texts: bool = False
    threads: int | None = None
    follow_production: bool = False  # serve the store's production version, hot-swapped
    poll_seconds: float = 5.0
    monitor_window: int = 5000  # recent predictions kept for drift monitoring
    extra: dict[str, Any] = field(default_factory=dict)


class PredictRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to classify or tag")


class PredictResponse(BaseModel):
    model: str
    request_id: str
    predictions: list[dict[str, Any]]


class FeedbackRequest(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    correct_label: str = Field(min_length=1, max_length=200)
    predicted: str | None = Field(default=None, max_length=200)
    request_id: str | None = Field(default=None, max_length=100)


class FeedbackResponse(BaseModel):
    id: int
    model: str


class ErrorBody(BaseModel):
    error: dict[str, str]
    request_id: str


def model_version(predictor: Any) -> str:
    """A short content hash of the served model file(s), stable across restarts."""
    digest = hashlib.sha256()
    target = (predictor.model.path if hasattr(predictor.model, "path")
              else predictor.model_dir)
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:12]


class ModelSlot:
    """The served predictor and its version; swapped as one, between batches."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.version = model_version(predictor)

    def predict(self, inputs: list[Any]) -> list[Any]:
        return self.predictor.predict(inputs, batch_size=max(1, len(inputs)))


def error_response(status: int, code: str, message: str, request_id: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, "request_id": request_id},
                        status_code=status, headers=headers)


def create_app(settings: ServeSettings, predictor: Any = None) -> FastAPI:
    log = json_logger()
    metrics = ServiceMetrics()
    keys = KeyCache() if settings.auth else None
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    state: dict[str, Any] = {"ready": False}
    window = RollingWindow(settings.monitor_window)

    def load_predictor(run: Path | None = None) -> Any:
        from tunelab.predictor import Predictor

        return Predictor(run or settings.run, settings.backend, settings.threads,
                         spinning=False)

    def show(slot: ModelSlot) -> None:
        metrics.model.clear()
        metrics.model.labels(str(slot.predictor.run_dir), slot.version,
                             slot.predictor.backend).set(1)

    def predict_batch(inputs: list[Any]) -> list[tuple[str, Any]]:
        slot = state["slot"]  # one model per batch, also while a swap happens
        return [(slot.version, p) for p in slot.predict(inputs)]

    async def follow_production() -> None:
        """Poll the store; load a newly promoted model beside the served one, then swap.
        Requests keep being answered by the old model until the new one is ready."""
        from tunelab.store.records import production

        while True:
            await asyncio.sleep(settings.poll_seconds)
            try:
                run = await asyncio.to_thread(production)
                current = state["slot"].predictor.run_dir.resolve()
                if run is None or Path(run.path).resolve() == current:
                    continue
                slot = ModelSlot(await asyncio.to_thread(load_predictor, Path(run.path)))
            except Exception:
                log.exception("follow-production: keeping the current model")
                continue
            state["slot"] = slot
            show(slot)
            log.info("swapped", extra={"fields": {"run": run.path, "version": slot.version}})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot = ModelSlot(predictor or load_predictor())
        state["slot"] = slot
        try:  # open (and migrate) the store now, not inside the first feedback request
            from tunelab.store.db import database_url, engine_for

            await asyncio.to_thread(engine_for, database_url())
        except Exception:
            log.exception("store unavailable: feedback will fail until it is reachable")
        state["batcher"] = batcher = MicroBatcher(
            predict_batch, settings.max_batch_size, settings.max_wait_ms,
            metrics.batch_size.observe)
        batcher.start()
        show(slot)
        follower = None
        if settings.follow_production:
            follower = asyncio.get_running_loop().create_task(follow_production())
        state["ready"] = True
        log.info("ready", extra={"fields": {"run": str(slot.predictor.run_dir),
                                             "version": slot.version,
                                             "backend": slot.predictor.backend,
                                             "pid": os.getpid()}})
        yield
        state["ready"] = False
        if follower is not None:
            follower.cancel()
        await batcher.stop()
        log.info("stopped", extra={"fields": {"pid": os.getpid()}})

    app = FastAPI(title="tunelab", version="1", lifespan=lifespan,
                  description="Predictions from a model fine-tuned with tunelab.")
    app.state.tunelab = state
    app.state.metrics = metrics

    @app.middleware("http")
    async def envelope(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                       ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.perf_counter()
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > settings.max_body_bytes:
            response: Response = error_response(
                413, "body_too_large", f"request body over {settings.max_body_bytes} bytes",
                request_id)
        else:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("unhandled", extra={"fields": {"request_id": request_id}})
                response = error_response(500, "internal", "internal error", request_id)
        elapsed = time.perf_counter() - started
        path = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(elapsed)
        response.headers["x-request-id"] = request_id
        fields = {"request_id": request_id, "method": request.method, "path": request.url.path,
                  "status": response.status_code, "ms": round(elapsed * 1000, 2),
                  **getattr(request.state, "log_fields", {})}
        log.info("request", extra={"fields": fields})
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 422: "invalid", 429: "rate_limited",
                503: "not_ready"}.get(error.status_code, "error")
        return error_response(error.status_code, code, str(error.detail),
                              request.state.request_id, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error_response(422, "invalid", f"{where}: {first.get('msg', 'invalid request')}",
                              request.state.request_id)

    def caller(request: Request) -> StoredKey | None:
        if keys is None:
            return None
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else \
            request.headers.get("x-api-key")
        key = keys.verify(presented)
        if key is None:
            raise HTTPException(401, "missing or invalid API key; send Authorization: Bearer "
                                "KEY (create one with `tunelab keys create --name NAME`)",
                                headers={"WWW-Authenticate": "Bearer"})
        wait = limiter.check(key.key_id)
        if wait:
            raise HTTPException(429, f"rate limit of {settings.rate_limit:g} requests/s for "
                                f"key '{key.name}' exceeded; retry after {wait:.2f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})
        request.state.log_fields = {"key": key.name}
        return key

    def ready_slot() -> ModelSlot:
        if not state["ready"]:
            raise HTTPException(503, "the model is not loaded yet")
        return state["slot"]

    errors = {code: {"model": ErrorBody} for code in (401, 413, 422, 429, 503)}

    @app.post("/v1/predict", response_model=PredictResponse, responses=errors)
    async def predict(body: PredictRequest, request: Request,
                      key: StoredKey | None = Depends(caller)) -> PredictResponse:
        ready_slot()
        if len(body.texts) > settings.max_texts:
            raise HTTPException(413, f"texts: {len(body.texts)} texts, at most "
                                f"{settings.max_texts} per request; split the request")
        for i, text in enumerate(body.texts):
            if not text.strip():
                raise HTTPException(422, f"texts.{i}: empty text; send non-empty texts")
            if len(text) > settings.max_chars:
                raise HTTPException(422, f"texts.{i}: {len(text)} characters, at most "
                                    f"{settings.max_chars}; shorten or split the text")
        fields = {"n_texts": len(body.texts)}
        if settings.log_texts:
            fields["texts"] = body.texts
        request.state.log_fields = {**getattr(request.state, "log_fields", {}), **fields}
        try:
            with metrics.in_flight.track_inprogress():
                answered = await state["batcher"].submit(body.texts)
        except TunelabError as error:
            raise HTTPException(422, str(error)) from None
        version, predictions = answered[0][0], [p for _, p in answered]
        window.add(predictions)
        for p in predictions:
            for label in ([p["label"]] if "label" in p else p.get("labels")
                          or [e["type"] for e in p.get("entities", [])]):
                metrics.predicted.labels(label).inc()
        return PredictResponse(model=version, request_id=request.state.request_id,
                               predictions=predictions)

    @app.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
              responses=errors)
    async def feedback(body: FeedbackRequest, request: Request,
                       key: StoredKey | None = Depends(caller)) -> FeedbackResponse:
        """Store a correction (text classification): the label the model should have given."""
        from tunelab.store.records import add_feedback

        slot = ready_slot()
        labels = slot.predictor.labels
        if slot.predictor.task.name != "text-classification":
            raise HTTPException(422, "feedback takes a corrected label; this model is a "
                                f"{slot.predictor.task.name} model")
        for field_name, value in (("correct_label", body.correct_label),
                                  ("predicted", body.predicted)):
            if value is not None and value not in labels:
                raise HTTPException(422, f"{field_name}: '{value}' is not one of the model's "
                                    f"labels: {', '.join(labels)}")
        row_id = await asyncio.to_thread(
            add_feedback, slot.predictor.run_dir, slot.version, body.text, body.correct_label,
            body.predicted, body.request_id, key.name if key else None)
        return FeedbackResponse(id=row_id, model=slot.version)

    @app.get("/v1/model", responses=errors)
    async def model_info(key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        slot = ready_slot()
        p = slot.predictor
        card = p.run_dir / "README.md"
        return {"run": p.run_dir.name, "version": slot.version, "backend": p.backend,
                "task": p.task.name, "labels": p.labels, "multi_label": p.task.multi_label,
                "base_model": p.meta.get("base_model"), "method": p.meta.get("method"),
                "limits": {"max_texts": settings.max_texts, "max_chars": settings.max_chars},
                "model_card": card.read_text(encoding="utf-8") if card.is_file() else None}

    @app.get("/v1/monitor", responses=errors)
    async def monitor(key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        """Label and confidence counts over the most recent predictions."""
        slot = ready_slot()
        return {"version": slot.version, "run": str(slot.predictor.run_dir),
                "window": settings.monitor_window, **window.summary()}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz() -> dict[str, str]:
        slot = ready_slot()
        return {"status": "ready", "version": slot.version}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


SETTINGS_ENV = "TUNELAB_SERVE_SETTINGS"


def settings_to_env(settings: ServeSettings) -> str:
    import json
    from dataclasses import asdict

    return json.dumps(asdict(settings), default=str)


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers: the settings come from the environment."""
    import json

    raw = json.loads(os.environ[SETTINGS_ENV])
    raw["run"] = Path(raw["run"])
    return create_app(ServeSettings(**raw))
