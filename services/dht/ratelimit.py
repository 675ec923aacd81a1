"""Requests per second per peer and per IP address: a token bucket per key, sans-IO.

Guarantees: ``take(key, now)`` admits while the key's bucket holds a token (``burst`` at most,
refilled at ``rate`` per second) and otherwise answers the whole seconds until the next token
(a ``retry_after``); at most ``max_keys`` buckets are kept (the least recently used goes: a
flood of fresh addresses costs a bounded map, and a forgotten key starts with a full bucket,
which is no more than a new key gets anyway).
"""

from __future__ import annotations

import collections
import math

__all__ = ["KeyedRate"]


class KeyedRate:
    def __init__(self, rate: float, burst: int, *, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.max_keys = max_keys
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, key: str, now: float) -> int:
        """0 when admitted, else the seconds to wait (>= 1)."""
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        admitted = tokens >= 1.0
        if admitted:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0 if admitted else max(1, math.ceil((1.0 - tokens) / self.rate))

    def __len__(self) -> int:
        return len(self._buckets)
