"""Per-key rate limiting: a token bucket per key, refilled continuously.

The buckets live in the worker process: with `tunelab serve --workers N`, each worker
enforces the limit on its own, so a key may reach up to N times the rate in total."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # requests per second
    burst: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> float:
        """0 if a request may go now, else the seconds until one may."""
        self.refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """Thread-safe: FastAPI may call it from its thread pool as well as the event loop."""

    MAX_BUCKETS = 100_000  # bounds memory when keyed by client address

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, TokenBucket] = {}
        self.lock = threading.Lock()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.MAX_BUCKETS:
                self.buckets.clear()
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket

    def check(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        with self.lock:
            return self._bucket(key).take()

    def exhausted(self, key: str) -> bool:
        """Whether `key` has no request left now, without using one."""
        if self.rate <= 0:
            return False
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                return False
            bucket.refill()
            return bucket.tokens < 1
