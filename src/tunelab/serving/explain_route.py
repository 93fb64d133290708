"""POST /v1/explain: per-word attributions from the served model (occlusion on ONNX,
Integrated Gradients on torch). Costly, so it has its own per-key rate limit, a shorter
text bound, and runs one explanation at a time per worker, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request

from tunelab.errors import TunelabError
from tunelab.serving.keys import StoredKey
from tunelab.serving.limits import RateLimiter
from tunelab.serving.schemas import ExplainRequest
from tunelab.serving.settings import ServeSettings


def add_explain(app: FastAPI, settings: ServeSettings, ready_slot: Callable[[], Any],
                caller: Callable[..., StoredKey | None], errors: dict[int, Any]) -> None:
    limiter = RateLimiter(settings.explain_rate_limit,
                          max(1, int(settings.explain_rate_limit * 2)))
    one_at_a_time = asyncio.Lock()

    @app.post("/v1/explain", responses=errors)
    async def explain(body: ExplainRequest, request: Request,
                      key: StoredKey | None = Depends(caller)) -> dict[str, Any]:
        """Which words made the model decide: a score per word for the predicted label
        (or `label`); for NER, per entity."""
        from tunelab.explain.explainer import explain as run_explain

        slot = ready_slot()
        if len(body.text) > settings.explain_max_chars:
            raise HTTPException(413, f"text: {len(body.text)} characters, at most "
                                f"{settings.explain_max_chars} to explain; shorten the text")
        who = key.key_id if key is not None else (request.client.host if request.client
                                                  else "local")
        wait = limiter.check(who)
        if wait > 0:
            raise HTTPException(429, f"explain rate limit of {limiter.rate:g} requests/s "
                                f"exceeded; retry after {wait:.2f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})
        try:
            async with one_at_a_time:
                result = await asyncio.to_thread(run_explain, slot.predictor, body.text,
                                                 body.label)
        except TunelabError as error:
            raise HTTPException(422, str(error)) from None
        return {"model": slot.version, "request_id": request.state.request_id,
                "explanation": result}
