"""Byte-rate token buckets for the transport's send side: per connection, per peer, global.

``Bucket(rate, burst)``: ``await take(n)`` returns at once while tokens last and otherwise
sleeps for exactly the deficit at ``rate`` bytes/s, so over any stretch longer than ``burst /
rate`` the bytes sent stay at the set rate (the seeds' pacing bound is ±20 %). A take larger
than what is left goes into debt instead of waiting for a whole refill: a 64 KiB frame behind a
16 KiB burst is paced, never stuck. Concurrent takers share the debt in arrival order, so a
bucket shared by many connections (a peer's, the node's) paces their sum. ``rate = 0`` is off.
"""

from __future__ import annotations

import trio

__all__ = ["Bucket"]


class Bucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0 (0 = off)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 10, 65536.0))
        self._tokens = self.burst
        self._at = trio.current_time() if rate else 0.0

    @property
    def off(self) -> bool:
        return self.rate == 0

    async def take(self, n: int) -> None:
        if self.rate == 0:
            return
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            await trio.sleep(-self._tokens / self.rate)
