"""The admin HTTP plane (read-only, on TCP) and the app both planes share, served by the node's
HTTP server (``kernel.http.server``, the one the gateway runs on too).

Admin routes (JSON unless noted): ``GET /healthz``, ``GET /readyz``, ``GET /version``,
``GET /services/{name}``, ``GET /metrics`` (Prometheus text), ``GET /events?topic=kernel`` (live
JSON lines), ``GET /ui`` (the dashboard, ``kernel.admin.ui_routes``), and the read-only views
the services declared (``kernel.admin.relay``: ``/peers``, ``/outbox``, ...). Nothing on TCP
changes the node: any other path is 404, any other method 405 (DESIGN.md §6, §8); the acts are on
the control socket (``kernel.admin.ctl``). Every request is counted in
``http_requests_total{route,method,status}`` with the route *template*, so a scanner probing
random paths cannot grow the label set.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from kernel.admin.control import NodeControl
from kernel.admin.http import (
    Message,
    Receive,
    Request,
    Route,
    Scope,
    Send,
    parse_query,
    send_error,
    send_json,
)
from kernel.admin.relay import ServiceRoutes
from kernel.admin.routes import ReadRoutes
from kernel.admin.ui_routes import UiRoutes
from kernel.http.asgi import ASGIApp, answer_lifespan
from kernel.http.server import PeerCred, ServerLimits, serve_h11

__all__ = [
    "AdminBindError",
    "Admit",
    "NodeControl",
    "PlaneApp",
    "build_admin_app",
    "serve_admin",
]

log = logging.getLogger("kernel.admin")


_METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # route label for paths no template matches
ADMIN_MAX_CONNECTIONS = 64  # probes, scrapes, ronctl and event streams; one more: 429 busy


class AdminBindError(Exception):
    """The admin plane could not listen on the requested address; ``str()`` is one line."""


Admit = Callable[[Scope, Send], Awaitable[bool]]
"""Decides, before routing, whether a caller may use the plane at all; answers a refusal itself."""


class PlaneApp:
    """The ASGI callable of one plane: route table, optional ``admit`` gate, request counting.
    Answers ``lifespan`` itself, for ASGI servers that send it."""

    def __init__(
        self,
        control: NodeControl,
        routes: tuple[Route, ...],
        admit: Admit | None = None,
        alias: str = "",
        services: ServiceRoutes | None = None,
    ) -> None:
        self._control = control
        self._routes = routes
        self._services = services
        self._admit = admit
        self._alias = alias + "/" if alias else ""  # a path prefix that means the same route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        # Anything else (websocket): returning without accepting makes the server refuse it.

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method = str(scope["method"]).upper()
        template, route, params = UNMATCHED_ROUTE, None, None
        path = scope["path"]
        if self._alias and path.startswith(self._alias):
            path = path[len(self._alias) - 1 :]
        services = self._services.table() if self._services is not None else ()
        for candidate in (*self._routes, *services):
            params = candidate.match(path)
            if params is not None:
                template, route = candidate.template, candidate
                break
        try:
            if self._admit is not None and not await self._admit(scope, counted_send):
                template = "refused"
            elif route is None:
                await send_error(counted_send, 404, "not_found")
            elif method not in route.methods:
                allow = ", ".join(sorted(route.methods)).encode()
                await send_json(
                    counted_send, 405, {"error": "method_not_allowed"}, [(b"allow", allow)]
                )
            else:
                request = Request(
                    method=method,
                    path=path,
                    params=params or {},
                    query=parse_query(scope.get("query_string", b"")),
                    receive=receive,
                    send=counted_send,
                    caller=_caller(scope),
                )
                await route.methods[method](request)
        except Exception:
            log.exception("handler failed: %s %s", method, template)
            if status == 0:
                await send_error(counted_send, 500, "internal")
        finally:
            if status:
                self._control.metrics.http_requests.labels(
                    route=template,
                    method=method if method in _METHOD_LABELS else "OTHER",
                    status=str(status),
                ).inc()


def _caller(scope: Scope) -> str:
    cred = scope.get("extensions", {}).get("peer_cred")
    return f"uid {cred.uid} pid {cred.pid}" if isinstance(cred, PeerCred) else ""


def build_admin_app(
    control: NodeControl,
    *,
    retry_after: int = 5,
    events_buffer: int = 256,
    max_event_streams: int = 16,
) -> PlaneApp:
    """The read-only admin ASGI app for one node.

    ``retry_after`` is what /readyz advertises while degraded (seconds). Each /events client gets
    its own buffer of ``events_buffer`` events (overflow is dropped and counted in
    ``queue_dropped_total{queue="admin_events"}``); at most ``max_event_streams`` are open at once.
    """
    if retry_after < 1 or events_buffer < 1 or max_event_streams < 1:
        raise ValueError("retry_after, events_buffer and max_event_streams must be >= 1")
    routes = ReadRoutes(
        control,
        retry_after=retry_after,
        events_buffer=events_buffer,
        max_streams=max_event_streams,
    )
    services = ServiceRoutes(control, tcp=True)
    return PlaneApp(control, routes.table() + UiRoutes().table(), services=services)


def _split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise AdminBindError(f"admin address {bind!r} must be HOST:PORT (port 0 picks a free one)")
    return host, int(port)


async def _listen(bind: str, backlog: int) -> socket.socket:
    """A listening socket we own, so a refused bind never leaks a half-made socket."""
    host, port = _split_bind(bind)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AdminBindError(
            f"cannot resolve admin address {bind}: {exc.strerror or exc}"
        ) from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise AdminBindError(f"cannot bind the admin plane to {bind}: {reason}") from None
    return sock


class _ReportAddress:
    """Forwards the server's "started" (sent once it accepts) as our bound "host:port"."""

    def __init__(self, outer: trio.TaskStatus[str], address: str) -> None:
        self._outer = outer
        self._address = address

    def started(self, value: object = None) -> None:
        self._outer.started(self._address)


async def serve_admin(
    app: ASGIApp,
    bind: str,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` ("HOST:PORT", port 0 = any free port) until cancelled.

    Reports the bound "host:port" (the real port) through ``task_status`` once serving. Setting
    ``shutdown`` stops gracefully (in-flight requests get a short grace period); cancelling the
    caller's scope stops at once. A malformed address or a refused bind (port in use, unknown
    host) raises ``AdminBindError`` with a one-line message before anything is served; note that
    via ``nursery.start`` it then reaches the caller wrapped by the caller's nursery
    (``except* AdminBindError``).
    """
    backlog = 64
    sock = await _listen(bind, backlog)
    host, port = sock.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        await serve_h11(
            app,
            sock,
            ServerLimits(timeout=5.0, max_connections=ADMIN_MAX_CONNECTIONS, graceful=2.0),
            shutdown=shutdown,
            task_status=_ReportAddress(task_status, address),
        )
    finally:
        sock.close()
