"""The service's settings, stated once: `tunelab serve` takes its options, defaults and
help from this model, and each worker process reads it back from the environment
(pydantic-settings, prefix TUNELAB_SERVE_)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HIDDEN = {"cli": False}


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNELAB_SERVE_", env_parse_none_str="null",
                                      extra="forbid")

    run: Path | None = Field(default=None, json_schema_extra=HIDDEN)
    follow_production: bool = Field(
        default=False, description="Swap to each newly promoted model (`tunelab models "
        "promote`) without dropping requests")
    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: "
                      "every interface)")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on")
    workers: int = Field(default=1, ge=1, description="Processes (each loads the model)")
    backend: str = Field(default="auto", description="auto (exported int8 ONNX if present, "
                         "else torch), torch, onnx, onnx-fp32")
    auth: bool = Field(default=True, description="Require API keys (--no-auth: local "
                       "testing only)")
    max_batch_size: int = Field(default=32, ge=1, description="Texts per model call at most")
    max_wait_ms: float = Field(default=5.0, ge=0.0, description="How long a batch waits for "
                               "more texts while other requests are in flight")
    max_texts: int = Field(default=64, ge=1, description="Texts per request")
    max_chars: int = Field(default=2000, ge=1, description="Characters per text")
    max_body_bytes: int = Field(default=1_000_000, ge=1, description="Largest request body")
    rate_limit: float = Field(default=100.0, ge=0.0, description="Requests/s per key and "
                              "worker (0: off)")
    rate_burst: int | None = Field(default=None, ge=1, description="Requests a key may send "
                                   "at once (default: twice the rate limit)")
    max_queue: int = Field(default=256, ge=1, description="Texts waiting for the model; past "
                           "it, 503 with Retry-After at once")
    log_texts: bool = Field(default=False, description="Log request texts (masked unless "
                            "--mask-pii off)")
    mask_pii: str = Field(default="on", description="on: replace "
                          "personal data (emails, phones, cards, IDs ...) in logged texts and "
                          "stored feedback with placeholders; off: keep them as sent")
    explain_rate_limit: float = Field(default=2.0, ge=0.0, description="/v1/explain "
                                      "requests/s per key and worker (0: off)")
    explain_max_chars: int = Field(default=1000, ge=1, description="Characters per text "
                                   "to explain")
    threads: int | None = Field(default=None, ge=1, description="Inference threads per "
                                "worker")
    poll_seconds: float = Field(default=5.0, gt=0.0, json_schema_extra=HIDDEN)
    monitor_window: int = Field(default=5000, ge=1, description="Recent predictions kept for "
                                "drift monitoring")

    @field_validator("mask_pii")
    @classmethod
    def _on_or_off(cls, value: str) -> str:
        if value not in ("on", "off"):
            raise ValueError(f"'{value}': choose on or off")
        return value

    @model_validator(mode="after")
    def _burst(self) -> ServeSettings:
        if self.rate_burst is None:
            self.rate_burst = max(1, int(self.rate_limit * 2))
        return self

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for worker processes to read back."""
        prefix = self.model_config["env_prefix"]
        return {f"{prefix}{name.upper()}": json.dumps(value) if not isinstance(value, str)
                else value for name, value in self.model_dump(mode="json").items()}


def settings_from_env() -> Any:
    return ServeSettings()
