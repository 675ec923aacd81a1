"""The server side of a typed service protocol (``ipc.proto``): one command handler per service.

Guarantees: HELLO is answered with the service's ``hello``; every other frame is decoded
strictly into the protocol's request classes before ``dispatch`` sees it, and ``dispatch``'s
typed reply is encoded back; every rejection is counted in ``rejected_total{reason}`` and every
request timed in ``request_latency_seconds{op="<service>_<op>"}`` (``op="invalid"`` for frames
that never decoded).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ipc import oap
from ipc.proto.codec import AnyRequest, ServiceProtocol
from kernel.exposes import SERVICE_PREFIX
from kernel.metrics import Metrics

__all__ = ["Dispatch", "protocol_handler"]

Dispatch = Callable[[AnyRequest], Awaitable[object]]
"""A service's business logic: a decoded request in, its typed reply out (or ``OapError``)."""


def protocol_handler(
    protocol: ServiceProtocol,
    *,
    hello: oap.HelloResponse,
    dispatch: Dispatch,
    metrics: Metrics,
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    """The command handler (``ctx.command_server(handler)``) serving ``protocol``."""
    prefix = protocol.service.removeprefix(SERVICE_PREFIX)  # op labels read "storage.put"

    async def handle(req: oap.Frame) -> oap.Frame:
        if oap.is_hello_request(req):
            return oap.hello_response(req, hello)
        start = time.perf_counter()
        op = "invalid"
        try:
            request = protocol.parse_request(req)
            op = request.OP
            return protocol.reply_frame(req, await dispatch(request))
        except oap.OapError as exc:
            metrics.rejected.labels(reason=exc.reason).inc()
            raise
        finally:
            elapsed = time.perf_counter() - start
            metrics.request_latency_seconds.labels(op=f"{prefix}_{op}").observe(elapsed)

    return handle
