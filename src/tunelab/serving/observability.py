"""Prometheus metrics for the service."""

from __future__ import annotations

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
