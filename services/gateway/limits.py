"""Admission control for the gateway: the in-flight cap, the token bucket, body caps.

Everything here answers at once: a request over a limit is refused with a typed error before any
work is done for it, never queued. All state is per gateway process (one trio thread): no locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

from services.gateway.errors import GatewayError

__all__ = ["BodyCounter", "Deadline", "InflightLimiter", "ShedWatch", "TokenBucket"]


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

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
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


class Deadline:
    """A request's two deadlines on its cancel scope, whichever comes first: idle (``timeout``
    after the last progress) and overall (``timeout`` plus the time ``min_rate`` bytes/s needs
    for the bytes moved so far, from the start). Progress can push the idle one back, never
    past the overall one: a client that trickles below ``min_rate`` is cut, and an admitted
    request always finishes (or is answered) in bounded time."""

    __slots__ = ("_cs", "_min_rate", "_start", "_timeout", "moved")

    def __init__(self, cs: trio.CancelScope, timeout: float, min_rate: float) -> None:
        self._cs = cs
        self._timeout = timeout
        self._min_rate = min_rate
        self._start = trio.current_time()
        self.moved = 0
        cs.deadline = self._start + timeout

    def progress(self, n: int) -> None:
        self.moved += n
        now = trio.current_time()
        overall = self._start + self._timeout + self.moved / self._min_rate
        self._cs.deadline = min(now + self._timeout, overall)


class ShedWatch:
    """Says when writes are being shed for a sustained while: over the last ``window`` seconds
    (1 s buckets), at least ``min_sheds`` writes were refused and they were more than half of
    all writes; it clears once the window holds no more than a tenth (judged on every write and
    on every ``tick``, so it clears when writes stop too). ``on_change(degraded)``
    is called on every change (the gateway reports itself not-ready meanwhile, so /readyz and
    load balancers see the pressure before the node collapses)."""

    def __init__(
        self,
        on_change: Callable[[bool], None] | None,
        *,
        window: int = 5,
        min_sheds: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._window = window
        self._min = min_sheds
        self._clock = clock
        self._buckets: dict[int, list[int]] = {}  # second -> [admitted, shed]
        self.degraded = False

    def _note(self, index: int) -> None:
        now = int(self._clock())
        bucket = self._buckets.get(now)
        if bucket is None:
            self._expire(now)
            bucket = self._buckets[now] = [0, 0]
        bucket[index] += 1
        self._judge()

    def tick(self) -> None:
        """Re-judge on the clock alone. Called about once a second by the gateway: once writes
        are shed, a load balancer honouring /readyz sends no more, so waiting for the next write
        to clear the window would keep the node not-ready for as long as it is left alone."""
        self._expire(int(self._clock()))
        self._judge()

    def _expire(self, now: int) -> None:
        for old in [k for k in self._buckets if k <= now - self._window]:
            del self._buckets[old]

    def _judge(self) -> None:
        admitted = sum(b[0] for b in self._buckets.values())
        shed = sum(b[1] for b in self._buckets.values())
        total = admitted + shed
        if not self.degraded and shed >= self._min and shed * 2 > total:
            self._set(True)
        elif self.degraded and shed * 10 <= total:
            self._set(False)

    def _set(self, degraded: bool) -> None:
        self.degraded = degraded
        if self._on_change is not None:
            self._on_change(degraded)

    def admitted(self) -> None:
        self._note(0)

    def shed(self) -> None:
        self._note(1)
