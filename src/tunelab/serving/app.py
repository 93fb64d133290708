"""The FastAPI application: predict, model info, health, readiness and metrics.

Every endpoint but health and metrics needs an API key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`). Errors are JSON: {"error": {"code", "message"}, "request_id"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelab.errors import TunelabError
from tunelab.json_logs import json_logger
from tunelab.monitoring.drift import RollingWindow
from tunelab.serving.batcher import MicroBatcher, QueueFull
from tunelab.serving.docs import add_offline_docs
from tunelab.serving.explain_route import add_explain
from tunelab.serving.guard import RequestGuard
from tunelab.serving.keys import KeyCache, StoredKey
from tunelab.serving.limits import RateLimiter
from tunelab.serving.masking import ServiceMasker
from tunelab.serving.observability import ServiceMetrics
from tunelab.serving.schemas import (
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    task_request,
    task_response,
)
from tunelab.serving.settings import ServeSettings


def model_version(predictor: Any) -> str:
    """The first 12 hex digits of a SHA-256 over the served model's files (names and
    contents), so the same weights give the same version on any machine."""
    digest = hashlib.sha256()
    target = (predictor.model.path if hasattr(predictor.model, "path")
              else predictor.model_dir)
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    for path in files:
        digest.update(f"{path.relative_to(target.parent)}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


class ModelSlot:
    """The served predictor and its version; swapped as one, between batches."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.version = model_version(predictor)

    def predict(self, inputs: list[Any], options: dict[str, Any]) -> list[Any]:
        return self.predictor.predict(inputs, max(1, len(inputs)), **options)


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
    task_cls = type(predictor.task) if predictor is not None else served_task(settings.run)
    request_model, response_model = task_request(task_cls), task_response(task_cls)
    request_fields = set(task_cls.Request.model_fields)
    masker = ServiceMasker(settings.mask_pii == "on")

    def load_predictor(run: Path | None = None) -> Any:
        from tunelab.predictor import Predictor

        return Predictor(run or settings.run, settings.backend, settings.threads,
                         spinning=False)

    def show(slot: ModelSlot) -> None:
        metrics.model.clear()
        metrics.model.labels(str(slot.predictor.run_dir), slot.version,
                             slot.predictor.backend).set(1)

    def predict_batch(inputs: list[Any], **options: Any) -> list[tuple[str, Any]]:
        slot = state["slot"]  # one model per batch, also while a swap happens
        return [(slot.version, p) for p in slot.predict(inputs, options)]

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
                # loading and hashing the weights take a while: off the event loop
                slot = await asyncio.to_thread(
                    lambda path=Path(run.path): ModelSlot(load_predictor(path)))
            except Exception:
                log.exception("follow-production: keeping the current model")
                continue
            if type(slot.predictor.task) is not task_cls:  # the request shape would change
                log.error("follow-production: keeping the current model", extra={"fields": {
                    "run": run.path, "reason": f"a {slot.predictor.task.name} model cannot "
                    f"replace a {task_cls.name} model in a running service"}})
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
        if masker.enabled and settings.log_texts:  # every request's log line needs it
            await asyncio.to_thread(masker.masker)
        # otherwise presidio (seconds to import) loads after the first prediction is sent:
        # loading it alongside the first request held the interpreter lock it needed
        state["warm_masker"] = masker.enabled and not settings.log_texts
        state["batcher"] = batcher = MicroBatcher(
            predict_batch, settings.max_batch_size, settings.max_wait_ms,
            metrics.batch_size.observe, max_queue=settings.max_queue)
        batcher.start()
        show(slot)
        follower = None
        if settings.follow_production:
            follower = asyncio.get_running_loop().create_task(follow_production())
        state["ready"] = True
        log.info("ready", extra={"fields": {"run": str(slot.predictor.run_dir),
                                             "url": f"http://{settings.host}:{settings.port}",
                                             "version": slot.version,
                                             "backend": slot.predictor.backend,
                                             "pid": os.getpid()}})
        yield
        state["ready"] = False
        for task in (follower, state.get("warming")):
            if task is not None:
                task.cancel()
        await batcher.stop()
        log.info("stopped", extra={"fields": {"pid": os.getpid()}})

    app = FastAPI(title="tunelab", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Predictions from a model fine-tuned with tunelab.")
    add_offline_docs(app)
    app.state.tunelab = state
    app.state.metrics = metrics

    app.add_middleware(
        RequestGuard, keys=keys, limiter=limiter, max_body_bytes=settings.max_body_bytes,
        metrics=metrics, log=log, known_paths=lambda: {r.path for r in app.routes})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        status = error.status_code
        if status == 400:  # FastAPI's "error parsing the body" (say, JSON nested too deep)
            status, error.detail = 422, f"body: not valid JSON ({error.detail})"
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 422: "invalid", 429: "rate_limited",
                503: "unavailable"}.get(status, "error")
        return error_response(status, code, str(error.detail),
                              request.state.request_id, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if loc in (["texts"], ["pairs"]) and first.get("type") == "too_long":
            return error_response(413, "too_large", f"{where}: at most {settings.max_texts} "
                                  "per request; split the request", request.state.request_id)
        if first.get("type") in ("string_pattern_mismatch", "string_too_short"):
            message = "empty text; send non-empty texts"
        elif first.get("type") == "string_too_long" and len(loc) == 2:
            message = (f"{message.replace('String should', 'the text should')}; shorten or "
                       "split the text")
        return error_response(422, "invalid", f"{where}: {message}", request.state.request_id)

    def caller(request: Request) -> StoredKey | None:
        """The key the guard checked (before the body was read)."""
        if keys is None:
            return None
        key = getattr(request.state, "key", None)
        if key is None:  # the guard lets only open paths through without a key
            raise HTTPException(401, "missing or invalid API key",
                                headers={"WWW-Authenticate": "Bearer"})
        return key

    def ready_slot() -> ModelSlot:
        if not state["ready"]:
            raise HTTPException(503, "the model is not loaded yet")
        return state["slot"]

    errors = {code: {"model": ErrorBody} for code in (401, 413, 422, 429, 503)}

    async def predict(body: PredictRequest, request: Request, after: BackgroundTasks,
                      key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        slot = ready_slot()
        if state.pop("warm_masker", False):  # not in the first feedback either
            after.add_task(warm_masker)
        inputs = body.inputs
        if len(inputs) > settings.max_texts:
            raise HTTPException(413, f"{'texts' if body.texts else 'pairs'}: {len(inputs)} "
                                f"inputs, at most {settings.max_texts} per request; split the "
                                "request")
        pair_model = slot.predictor.takes_pairs
        if pair_model != (body.pairs is not None):
            raise HTTPException(422, "pairs: this model was trained on text pairs; send "
                                '{"pairs": [[first, second], ...]}' if pair_model else
                                "texts: this model takes single texts; send "
                                '{"texts": [...]}, not pairs')
        for i, item in enumerate(inputs):
            for j, text in enumerate([item] if isinstance(item, str) else item):
                if len(text) > settings.max_chars:
                    where = f"texts.{i}" if isinstance(item, str) else f"pairs.{i}.{j}"
                    raise HTTPException(422, f"{where}: {len(text)} characters, at most "
                                        f"{settings.max_chars}; shorten or split the text")
        fields: dict[str, Any] = {"n_texts": len(inputs)}
        if settings.log_texts:
            fields["texts"] = await asyncio.to_thread(masker.mask_inputs, inputs)
        request.state.log_fields = {**getattr(request.state, "log_fields", {}), **fields}
        options = body.model_dump(include=request_fields)
        try:
            with metrics.in_flight.track_inprogress():
                answered = await state["batcher"].submit(inputs, options)
        except QueueFull as full:
            raise HTTPException(503, f"the server is at capacity ({full.waiting} texts "
                                "waiting); retry shortly",
                                headers={"Retry-After": "1"}) from None
        except TunelabError as error:
            raise HTTPException(422, str(error)) from None
        version, predictions = answered[0][0], [p for _, p in answered]
        window.add(predictions)
        for p in predictions:
            for label in slot.predictor.task.prediction_labels(p):
                metrics.predicted.labels(label).inc()
        return {"model": version, "request_id": request.state.request_id,
                "predictions": predictions}

    async def warm_masker() -> None:
        state["warming"] = asyncio.get_running_loop().create_task(
            asyncio.to_thread(masker.masker))

    predict.__annotations__["body"] = request_model  # the task's own request shape
    app.post("/v1/predict", response_model=response_model, response_model_exclude_none=True,
             responses=errors)(predict)

    @app.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
              responses=errors)
    async def feedback(body: FeedbackRequest, request: Request,
                       key: StoredKey | None = Depends(caller)) -> FeedbackResponse:
        """Store a correction (text classification): the label the model should have given."""
        from tunelab.store.records import add_feedback

        slot = ready_slot()
        labels = slot.predictor.task.feedback_labels()
        if labels is None:
            raise HTTPException(422, "feedback takes a corrected label; this model is a "
                                f"{slot.predictor.task.name} model")
        if slot.predictor.takes_pairs:
            raise HTTPException(422, "feedback stores single texts; this model takes text "
                                "pairs: retrain it with `tunelab retrain --data FILE`")
        for field_name, value in (("correct_label", body.correct_label),
                                  ("predicted", body.predicted)):
            if value is not None and value not in labels:
                raise HTTPException(422, f"{field_name}: '{value}' is not one of the model's "
                                    f"labels: {', '.join(labels)}")
        text = (await asyncio.to_thread(masker.mask_inputs, [body.text]))[0]
        row_id = await asyncio.to_thread(
            add_feedback, slot.predictor.run_dir, slot.version, text, body.correct_label,
            body.predicted, body.request_id, key.name if key else None)
        return FeedbackResponse(id=row_id, model=slot.version)

    add_explain(app, settings, ready_slot, caller, errors)

    @app.get("/v1/model", responses=errors)
    async def model_info(key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        slot = ready_slot()
        p = slot.predictor
        card = p.run_dir / "README.md"
        return {"run": p.run_dir.name, "version": slot.version, "backend": p.backend,
                **p.task.describe(), "labels": p.labels,
                "request_options": list(p.task.Request.model_fields),
                "base_model": p.meta.get("base_model"), "method": p.meta.get("method"),
                "takes_pairs": p.takes_pairs,
                "mask_pii": settings.mask_pii,
                "limits": {"max_texts": settings.max_texts, "max_chars": settings.max_chars,
                           "explain_max_chars": settings.explain_max_chars,
                           "rate_limit_per_worker": settings.rate_limit},
                "model_card": card.read_text(encoding="utf-8") if card.is_file() else None}

    @app.get("/v1/monitor", responses=errors)
    async def monitor(key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        """Label and confidence counts over the most recent predictions of the worker
        process that answers (with --workers N, each keeps its own window)."""
        slot = ready_slot()
        return {"version": slot.version, "run": str(slot.predictor.run_dir),
                "window": settings.monitor_window, "worker_pid": os.getpid(),
                **window.counts()}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz() -> dict[str, str]:
        slot = ready_slot()
        return {"status": "ready", "version": slot.version}

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def served_task(run: Path | None) -> Any:
    """The task class of the run to serve, read from its saved metadata."""
    from tunelab import registry
    from tunelab.predictor import model_dir_of
    from tunelab.rundir import MODEL_META, read_json

    if run is None:
        raise TunelabError("no run to serve; give a run directory")
    return registry.tasks.get(read_json(model_dir_of(run) / MODEL_META)["task"])


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers: the settings come from the environment
    (TUNELAB_SERVE_*, written by `tunelab serve`)."""
    return create_app(ServeSettings())
