"""Serve the gateway's ASGI app on a socket someone else bound: the node's HTTP server
(``kernel.http.server``) or hypercorn's trio worker, kept as the measured reference.

``serve`` picks the server named by the gateway's ``server`` setting. The default is ``h11``
(``kernel.http.server``): on GET 64 KiB it serves ~2-3x the requests of hypercorn's trio worker
per CPU second (bench/gateway.py prints both); ``hypercorn`` stays available as the reference.

The node binds the gateway's address and hands the listening socket to the service (socket
activation): the port never closes while the gateway restarts, connections queue in the kernel's
backlog meanwhile. Hypercorn adopts our socket through ``worker_serve(sockets=...)``; it does
its own HTTP/1.1 parsing (h11) and bounds what it buffers per connection
(``max_app_queue_size`` body pieces, ``h11_max_incomplete_size`` header bytes).
"""

from __future__ import annotations

import logging
import socket
from typing import Any, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from kernel.http.asgi import ASGIApp
from kernel.http.server import ServerLimits, serve_h11
from services.gateway.errors import render_server_error
from services.gateway.settings import GatewaySettings

__all__ = ["hypercorn_config", "serve", "serve_on_socket"]


def hypercorn_config(timeout: float) -> Config:
    """Hardening: ``timeout`` bounds keep-alive idleness and every read from a client."""
    config = Config()
    config.accesslog = None  # counted in http_requests_total instead
    config.errorlog = logging.getLogger("svc-gateway.http")
    config.include_server_header = False
    config.keep_alive_timeout = timeout
    config.read_timeout = max(1, round(timeout))
    config.graceful_timeout = 2
    config.startup_timeout = 5
    config.shutdown_timeout = 5
    config.h11_max_incomplete_size = 16 * 1024
    config.max_app_queue_size = 4  # body pieces waiting for the app, per request
    return config


async def serve_on_socket(
    app: ASGIApp,
    sock: socket.socket,
    timeout: float,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the listening ``sock`` until cancelled (or ``shutdown`` is set)."""
    sock.setblocking(False)
    await worker_serve(
        # hypercorn types ASGI events as TypedDicts, ours (kernel.http.asgi) as plain mappings:
        # the same messages, two spellings of their type
        wrap_app(cast(Any, app), 0, "asgi"),  # Any: hypercorn's own ASGI types
        hypercorn_config(timeout),
        sockets=Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[]),
        shutdown_trigger=shutdown.wait if shutdown is not None else trio.sleep_forever,
        task_status=cast(Any, task_status),  # it reports the bound addresses; we need none
    )


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    settings: GatewaySettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``sock`` with the server ``settings.server`` names."""
    if settings.server == "hypercorn":
        await serve_on_socket(
            app, sock, settings.timeout, shutdown=shutdown, task_status=task_status
        )
        return
    limits = ServerLimits(timeout=settings.timeout, max_connections=settings.max_connections)
    await serve_h11(
        app,
        sock,
        limits,
        render_error=render_server_error,
        shutdown=shutdown,
        task_status=task_status,
    )
