"""Admission control for the gateway: settings, the in-flight cap, the token bucket, body caps.

Everything here answers at once: a request over a limit is refused with a typed error before any
work is done for it, never queued. All state is per gateway process (one trio thread): no locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from services.gateway.errors import GatewayError

__all__ = ["BodyCounter", "GatewaySettings", "InflightLimiter", "TokenBucket", "parse_settings"]


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be > 0, got {value}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


@attrs.frozen
class GatewaySettings:
    """svc-gateway's ``[[services]] settings`` table (specs/config.md); defaults are hardening.

    ``timeout``: seconds for a request's work and each wait on the client (keep-alive, a body
    chunk); ``max_inflight``: requests served at once (more: 429 at once); ``rate``/``burst``: a
    token bucket over all requests, ``rate = 0`` turns it off; ``body_cap``: the largest
    single-shot (Content-Length) body; ``max_object_size``: the largest chunked upload;
    ``server``: the HTTP/1.1 server loop, ``h11`` (ours, ~3x cheaper per request) or
    ``hypercorn``; ``max_connections``: client connections served at once (h11 server; one more
    is answered 429 and closed).
    """

    timeout: float = attrs.field(default=5.0, validator=_positive)
    max_inflight: int = attrs.field(default=512, validator=_positive)
    rate: float = attrs.field(default=0.0, validator=_non_negative)
    burst: int = attrs.field(default=0, validator=_non_negative)
    body_cap: int = attrs.field(default=1_048_576, validator=_positive)
    max_object_size: int = attrs.field(default=1 << 30, validator=_positive)
    chunk: int = attrs.field(default=65_536, validator=_positive)  # read/stream piece size
    server: str = attrs.field(default="h11", validator=attrs.validators.in_(("h11", "hypercorn")))
    max_connections: int = attrs.field(default=1024, validator=_positive)


_converter = cattrs.Converter(forbid_extra_keys=True)


def _strict_number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise TypeError(f"expected an integer, got {value!r}")
    return kind(value)


_converter.register_structure_hook(int, _strict_number)
_converter.register_structure_hook(float, _strict_number)


def parse_settings(raw: Mapping[str, Any]) -> GatewaySettings:
    """Structure the settings table; unknown keys and bad values raise ``ValueError`` (one line)."""
    try:
        return _converter.structure(dict(raw), GatewaySettings)
    except Exception as exc:  # cattrs groups the reasons; flatten to one line for the operator
        leaves = []
        stack: list[BaseException] = [exc]
        while stack:
            e = stack.pop()
            if isinstance(e, BaseExceptionGroup):
                stack.extend(e.exceptions)
            else:
                leaves.append(str(e))
        raise ValueError(f"svc-gateway settings: {'; '.join(sorted(leaves))}") from None


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

    def __init__(self, cap: int, reason: str) -> None:
        self.cap = cap
        self.reason = reason
        self.seen = 0

    def add(self, n: int) -> None:
        self.seen += n
        if self.seen > self.cap:
            raise GatewayError(self.reason, f"body larger than {self.cap} bytes")
