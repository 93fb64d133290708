"""The HTTP service: FastAPI app, micro-batching, API keys, limits, metrics and logs."""
