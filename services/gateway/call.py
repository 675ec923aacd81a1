"""One admitted gateway request as a route's handler sees it, and what a route's method is.

The gateway's routes are declared (``services.gateway.app.ROUTES``, ``kernel.http.routes``): a
template, and for each method an ``Op``: its handler, its ``request_latency_seconds`` label and
its admission class. Adding a route is one entry there and one handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import attrs
import trio

from kernel.http.asgi import Receive, Scope
from services.gateway.exchange import Exchange

__all__ = ["Admission", "Call", "Op"]

Admission = Literal["read", "write", "poll"]
"""``write``: also takes one of ``max_writes`` slots (writes are shed before reads); ``poll``: a
long poll, under its own cap (``max_polls``), not ``max_inflight``."""


@attrs.frozen
class Call:
    scope: Scope
    receive: Receive
    ex: Exchange
    method: str
    template: str
    params: Mapping[str, str]
    cs: trio.CancelScope  # the request's deadline (a long poll moves it)


@attrs.frozen
class Op:
    label: str  # the ``op`` label of request_latency_seconds
    # the handler, given the app (``GatewayApp``: Any, since the app module declares the table)
    serve: Callable[[Any, Call], Awaitable[None]]
    admission: Admission = "read"
