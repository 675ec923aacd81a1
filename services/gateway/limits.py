"""Admission control for the gateway: the in-flight cap, the token bucket, body caps.

Everything here answers at once: a request over a limit is refused with a typed error before any
work is done for it, never queued. All state is per gateway process (one trio thread): no locks.
"""

from __future__ import annotations

import math
import time
from typing import Any

from services.gateway.errors import GatewayError

__all__ = ["BodyCounter", "InflightLimiter", "TokenBucket"]


class InflightLimiter:
    """At most ``limit`` requests at once; the next one is refused with ``busy`` (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def slot(self) -> InflightLimiter:
        """``with limiter.slot():`` holds one slot for the block (a plain class context manager:
        cheaper per request than a generator-based one)."""
        return self

    def __enter__(self) -> None:
        if self.inflight >= self.limit:
            raise GatewayError(
                "busy", f"{self.inflight} requests in flight (max {self.limit})", retry_after=1
            )
        self.inflight += 1

    def __exit__(self, *exc: object) -> None:
        self.inflight -= 1


class TokenBucket:
    """``rate`` tokens per second up to ``burst`` (at least 1); ``rate = 0`` admits everything.

    ``take()`` refuses with ``quota_exceeded`` (429) and a ``Retry-After`` of the seconds until
    the next token, rounded up.
    """

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = float(max(burst, 1))
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def take(self) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return
        wait = math.ceil((1.0 - self._tokens) / self.rate)
        raise GatewayError("quota_exceeded", f"over {self.rate:g} requests/s", retry_after=wait)


class BodyCounter:
    """Counts a request body as it arrives; raises 413 the moment it would pass ``cap``, so the
    excess is never buffered. ``reason`` says which cap (single-shot or streamed)."""

    def __init__(self, cap: int, reason: str, what: str = "body") -> None:
        self.cap = cap
        self.reason = reason
        self.what = what  # how the detail starts: "body larger than N bytes"
        self.seen = 0

    def add(self, n: int) -> None:
        self.seen += n
        if self.seen > self.cap:
            raise GatewayError(self.reason, f"{self.what} larger than {self.cap} bytes")
