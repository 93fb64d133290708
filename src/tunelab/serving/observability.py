"""Prometheus metrics and structured JSON logs for the service."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tunelab_requests_total", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("tunelab_request_seconds", "Request latency", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("tunelab_batch_size", "Texts per model batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.predicted = Counter("tunelab_predicted_labels_total", "Predicted labels",
                                 ["label"], registry=self.registry)
        self.in_flight = Gauge("tunelab_predictions_in_flight",
                               "Predict requests waiting for or in a batch",
                               registry=self.registry)
        self.model = Gauge("tunelab_model_info", "The model being served (value 1)",
                           ["run", "version", "backend"], registry=self.registry)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        row: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        row.update(getattr(record, "fields", {}))
        if record.exc_info:
            row["error"] = self.formatException(record.exc_info)
        return json.dumps(row, ensure_ascii=False)


def json_logger(name: str = "tunelab.serve") -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
