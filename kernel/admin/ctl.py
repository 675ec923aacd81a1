"""The control plane: HTTP over ``<runtime_dir>/ctl.sock``, the only way to act on a node.

Why a Unix socket (DESIGN.md §6): a TCP port can be reached by every local user and, through a
browser, by any web page the operator visits; a socket file in the 0700 runtime dir, itself 0600,
can be opened only by the node's user, and the kernel tells us who connected (``SO_PEERCRED``), so
even a socket whose mode was loosened refuses everyone but the node's uid and root. A refusal is
answered 403 ``not_permitted``, logged (uid and pid, never what was asked) and counted in
``rejected_total{reason="peer_uid"}``.

Routes: the read-only ones of the admin plane, and the acts (``kernel.admin.acts``):
``POST /stop``, ``POST /stop|start|restart/{service}``, ``POST /release/{service}``,
``POST /reload``, ``POST /fault/{service}?fault=...``, the token routes; ``GET /logs``
(``kernel.admin.log_routes``: the supervisor's log ring, for the node's user only); and every
route the services declared (``kernel.admin.relay``: the store's housekeeping, for one).
A ``/control`` prefix is accepted too (``/control/stop`` is ``/stop``), so scripts written for the
old TCP routes only change where they connect.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Collection
from pathlib import Path

import trio

from kernel import logs
from kernel.admin.acts import ActRoutes
from kernel.admin.app import PlaneApp
from kernel.admin.control import NodeControl
from kernel.admin.http import Scope, Send, send_error
from kernel.admin.log_routes import LogRoutes
from kernel.admin.relay import ServiceRoutes
from kernel.admin.routes import ReadRoutes
from kernel.http.server import PeerCred, ServerLimits, serve_h11

__all__ = ["CTL_SOCKET", "ControlBindError", "build_control_app", "serve_control"]

CTL_SOCKET = "ctl.sock"
CTL_MAX_CONNECTIONS = 32
REFUSED_REASON = "peer_uid"
_ALIAS = "/control"


class ControlBindError(Exception):
    """The control socket could not be created; ``str()`` is one line."""


def _default_uids() -> frozenset[int]:
    return frozenset({os.getuid(), 0})


def build_control_app(
    control: NodeControl, *, allowed_uids: Collection[int] | None = None
) -> PlaneApp:
    """The control ASGI app: read routes and acts, for callers whose uid is in ``allowed_uids``
    (default: the node's own uid and root)."""
    allowed = frozenset(allowed_uids) if allowed_uids is not None else _default_uids()
    refused = control.metrics.rejected.labels(reason=REFUSED_REASON)

    async def admit(scope: Scope, send: Send) -> bool:
        cred = scope.get("extensions", {}).get("peer_cred")
        if isinstance(cred, PeerCred) and cred.uid in allowed:
            return True
        uid, pid = (cred.uid, cred.pid) if isinstance(cred, PeerCred) else (None, None)
        logs.log("control_refused", level="warning", uid=uid, pid=pid, reason=REFUSED_REASON)
        refused.inc()
        await send_error(
            send,
            403,
            "not_permitted",
            f"the control socket accepts only uid {os.getuid()} (the node's user) or root",
        )
        return False

    routes = ReadRoutes(control, retry_after=5, events_buffer=256, max_streams=4).table()
    routes += ActRoutes(control).table()
    ring = getattr(control, "log_ring", None)
    if ring is not None:  # the node's log ring: for the node's user only, like the acts
        routes += LogRoutes(ring, lambda name: control.health.get(name) is not None).table()
    services = ServiceRoutes(control, tcp=False)
    return PlaneApp(control, routes, admit=admit, alias=_ALIAS, services=services)


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a dead node (the runtime dir is locked: ours now)
        sock.bind(str(path))
        os.chmod(path, 0o600)  # before listen: nobody can connect while it is looser
        sock.listen(64)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ControlBindError(
            f"cannot create the control socket {path}: {exc.strerror or exc}"
        ) from None
    return sock


async def serve_control(
    app: PlaneApp,
    runtime_dir: Path,
    *,
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``runtime_dir/ctl.sock`` (0600) until cancelled; reports the path once
    accepting. The socket file is removed when serving ends."""
    path = runtime_dir / CTL_SOCKET
    sock = _bind(path)
    try:

        class _Started:
            def started(self, value: object = None) -> None:
                task_status.started(path)

        await serve_h11(
            app,
            sock,
            ServerLimits(timeout=5.0, max_connections=CTL_MAX_CONNECTIONS, graceful=2.0),
            task_status=_Started(),
        )
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
