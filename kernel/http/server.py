"""The node's HTTP/1.1 server: trio + h11, serving an ASGI app on a socket someone else bound.

Both HTTP planes run on it: the admin plane (``kernel.admin``) and the gateway
(``services.gateway``). Why our own loop: hypercorn's trio worker costs ~290 µs of server CPU per
request and sets the gateway's ceiling (``../shared/notes/dataplane.md``); this loop costs about
a third of that (``bench/gateway.py`` prints both). h11 does all the parsing and framing; this
module only moves bytes and events between the socket and the app. It knows no plane: the
answers the server gives itself (busy, bad request, timeout, a failed app) are rendered by the
``render_error`` its caller passes.

Guarantees:

- HTTP/1.1 keep-alive; one request at a time per connection (pipelined requests wait in h11's
  buffer until the current response is complete, so answers keep their order);
- a request body reaches the app only as fast as the app calls ``receive()`` (one socket read
  per call, at most ``read_size`` bytes): back-pressure, nothing is buffered ahead of the app;
- ``Expect: 100-continue`` is answered when the app first asks for the body, and never if it
  answers without reading it (then the connection closes, the body is not drained);
- responses are framed by h11: ``Content-Length`` when the app gives one, chunked otherwise
  (close-delimited for HTTP/1.0); a body is never sent for HEAD, 204 or 304;
- the next request head must arrive whole within ``timeout`` of the previous response (or of
  accepting the connection); each body read and each write waits at most ``timeout``;
- at most ``max_connections`` connections are served; one more gets ``429 busy`` and is closed;
- a request h11 refuses, a body whose chunk framing breaks, or a head with both
  ``Content-Length`` and ``Transfer-Encoding`` gets ``400 bad_request`` and the connection is
  closed; another HTTP version than 1.0/1.1 gets ``505``; an app that
  fails before answering yields ``500 internal``; nothing of either reaches the client as a
  traceback (it is logged);
- ``receive()`` after the whole body returns ``http.disconnect`` as soon as the client closes
  its side (a long response, such as an event stream, learns that its client left) and
  otherwise waits until the exchange is over;
- ``send()`` on a connection that broke raises ``ClientDisconnected`` (an ``OSError``, as ASGI
  2.4 asks), so the app stops producing; the server treats it as the end of that request;
- on a Unix socket the scope's ``extensions["peer_cred"]`` is the caller's ``PeerCred``
  (``SO_PEERCRED``), so an app can decide who may act (the control plane does);
- shutdown: stop accepting, close idle connections, let requests in progress finish (their
  answers carry ``Connection: close``) for up to ``graceful`` seconds, then cancel them.

The listening socket stays open (it belongs to whoever bound it: the node, socket activation).
"""

from __future__ import annotations

import email.utils
import errno
import json
import socket
import struct
import time
from collections.abc import Callable, Sequence
from urllib.parse import unquote

import attrs
import h11
import trio

from ipc.plain import Json, JsonObject
from kernel import logs
from kernel.http.asgi import ASGIApp

__all__ = [
    "ClientDisconnected",
    "PeerCred",
    "RenderError",
    "ServerError",
    "ServerLimits",
    "json_error",
    "serve_h11",
]

Message = JsonObject
Headers = list[tuple[bytes, bytes]]


@attrs.frozen
class ServerError:
    """An answer the server gives itself: ``status``, a stable ``reason``, a human ``detail``
    and, for pressure, ``retry_after`` seconds."""

    status: int
    reason: str
    detail: str = ""
    retry_after: int | None = None


RenderError = Callable[[ServerError], tuple[Headers, bytes]]
"""``(headers, body)`` of a server answer: headers include content-type and content-length."""


def json_error(err: ServerError) -> tuple[Headers, bytes]:
    """The default rendering, the error shape of both planes (DESIGN.md §8):
    ``{"error": reason, "detail": ...}``, never cached, ``Retry-After`` when given."""
    body = json.dumps({"error": err.reason, "detail": err.detail}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if err.retry_after is not None:
        headers.append((b"retry-after", str(err.retry_after).encode()))
    return headers, body


_ACCEPT_PAUSE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_NO_BODY_STATUS = frozenset({204, 304})
_ACCEPT_BATCH = 64  # connections accepted per wake-up of the accept loop
_MAX_REFUSING = 16  # connections being told "busy" at once; past that they are just closed
_DRAIN_BUDGET = 64 * 1024  # unread request body dropped to keep a connection alive
_JOIN_LIMIT = 256 * 1024  # join head + body into one write up to this size (one syscall)
_ASGI = {"version": "3.0", "spec_version": "2.4"}


@attrs.frozen
class ServerLimits:
    """What one server bounds. ``timeout``: seconds for a request head to arrive whole (also the
    keep-alive idle limit) and for each body read or response write; ``max_connections``: served
    at once; ``max_header_bytes``: the largest request head h11 buffers; ``read_size``: bytes per
    socket read; ``graceful``: seconds requests in progress get to finish at shutdown."""

    timeout: float = 5.0
    max_connections: int = 1024
    max_header_bytes: int = 16 * 1024
    read_size: int = 65536
    graceful: float = 2.0


class ClientDisconnected(OSError):
    """The client went away (or stopped reading) while the app was answering."""


class _Timeout(Exception):
    """A read from the client did not complete within the timeout."""


class _DateCache:
    """The ``Date`` header value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


class _Server:
    def __init__(self, app: ASGIApp, limits: ServerLimits, render_error: RenderError) -> None:
        self.app = app
        self.limits = limits
        self.render_error = render_error
        self.conns: set[_Connection] = set()
        self.closing = False
        self.refusing = 0
        self.date = _DateCache()
        self.all_closed = trio.Event()

    async def accept_loop(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        """Accept every connection waiting, up to ``_ACCEPT_BATCH`` per wake-up. One accept per
        scheduler pass (``trio.SocketListener``) lets a burst of reconnecting clients (all told
        "Retry-After: 1" together) queue in the backlog for a pass each, and under load a pass
        is milliseconds: that queue was most of a 429's latency."""
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(_ACCEPT_BATCH):
                try:
                    raw, _ = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in _ACCEPT_PAUSE_ERRNOS:
                        raise
                    logs.log("accept_paused", level="warning", reason=errno.errorcode[exc.errno])
                    await trio.sleep(0.1)
                    break
                self._admit(raw, nursery)
            await trio.lowlevel.checkpoint()  # a full batch: let the connections run first

    def _admit(self, raw: socket.socket, nursery: trio.Nursery) -> None:
        if raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # what SocketListener did
        full = len(self.conns) >= self.limits.max_connections
        if full and self.refusing >= _MAX_REFUSING:
            raw.close()  # flooded: no answer at all beats an unbounded queue
            return
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        if full:
            self.refusing += 1
            nursery.start_soon(self._refuse, stream)
            return
        conn = _Connection(self, stream)
        self.conns.add(conn)
        nursery.start_soon(conn.run)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        try:
            conn = h11.Connection(h11.SERVER)
            err = ServerError(
                429, "busy", f"{self.limits.max_connections} connections open", retry_after=1
            )
            headers, data = self.render_error(err)
            headers = [*headers, (b"connection", b"close")]
            out = conn.send(h11.Response(status_code=err.status, headers=headers))
            out += conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage())
            with trio.move_on_after(1.0):
                await stream.send_all(out)
                await _linger(stream, 65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.refusing -= 1
            stream.socket.close()

    def forget(self, conn: _Connection) -> None:
        self.conns.discard(conn)
        if self.closing and not self.conns:
            self.all_closed.set()

    def begin_close(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their answer."""
        self.closing = True
        for conn in list(self.conns):
            conn.close_when_idle()
        if not self.conns:
            self.all_closed.set()


async def _linger(stream: trio.SocketStream, budget: int) -> None:
    """Half-close, then read (and drop) up to ``budget`` bytes until the client closes: closing
    with unread data would reset the connection and could destroy the answer in flight."""
    try:
        await stream.send_eof()
        while budget > 0:
            data = await stream.receive_some(65536)
            if not data:
                return
            budget -= len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


class _Connection:
    """One client connection: reads request heads, runs the app per request, writes answers."""

    def __init__(self, server: _Server, stream: trio.SocketStream) -> None:
        self.server = server
        self.limits = server.limits
        self.stream = stream
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self.idle_scope: trio.CancelScope | None = None
        self.broken = False  # the socket failed: nothing more can be written
        self.must_close = False  # the request body stalled or broke: answer, then close
        self.framing_error = ""  # why h11 refused the body's framing (answered 400 at once)
        self.client, self.local, self.peer_cred = _addresses(stream.socket)

    def close_when_idle(self) -> None:
        if self.idle_scope is not None:
            self.idle_scope.cancel()

    async def run(self) -> None:
        try:
            await self._serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ClientDisconnected):
            pass
        except Exception as exc:  # a bug here must cost one connection, never the server
            self.broken = True
            logs.log(
                "http_connection_error",
                level="error",
                reason=type(exc).__name__,
                detail=_one_line(exc),
            )
        finally:
            self.server.forget(self)
            with trio.CancelScope(shield=True):
                await self._close()

    async def _close(self) -> None:
        """Graceful close: after a complete exchange the client has nothing more to send, so
        lingering is cheap; bounded anyway."""
        if not self.broken and self.h11.their_state is not h11.CLOSED:
            with trio.move_on_after(min(1.0, self.limits.timeout)):
                await _linger(self.stream, 65536)
        self.stream.socket.close()

    async def _serve(self) -> None:
        while not self.server.closing:
            try:
                request = await self._next_request()
            except h11.RemoteProtocolError as exc:
                await self._answer_error(ServerError(400, "bad_request", _one_line(exc)))
                return
            except _Timeout:
                if self.h11.their_state is h11.IDLE and len(self.h11.trailing_data[0]) > 0:
                    await self._answer_error(
                        ServerError(
                            408, "request_timeout", "the request head did not arrive in time"
                        )
                    )
                return
            if request is None:
                return
            refusal = _refuse_head(request)
            if refusal is not None:
                await self._answer_error(refusal)
                return
            cycle = _Cycle(self, request)
            await cycle.run()
            if cycle.complete and cycle.may_drain() and not await self._drain_body():
                return
            if not cycle.reusable():
                return
            self.h11.start_next_cycle()

    async def _drain_body(self) -> bool:
        """Read and drop what the app left of the request body (a GET's end, or a small body
        the app answered without reading), up to ``_DRAIN_BUDGET`` bytes; False: close instead."""
        budget = _DRAIN_BUDGET
        while self.h11.their_state is h11.SEND_BODY:
            event = await self.next_body_event()
            if event is None:
                return False
            if isinstance(event, h11.Data):
                budget -= len(event.data)
                if budget < 0:
                    return False
        return True

    async def _next_request(self) -> h11.Request | None:
        """The next request head, or None when the client closed (or we are shutting down).
        One cancel scope: its deadline is the head timeout, ``close_when_idle`` cancels it."""
        with trio.CancelScope(deadline=trio.current_time() + self.limits.timeout) as scope:
            self.idle_scope = scope
            if self.server.closing:
                scope.cancel()
            try:
                while True:
                    event = self.h11.next_event()
                    if event is h11.NEED_DATA:
                        data = await self.stream.receive_some(self.limits.read_size)
                        self.h11.receive_data(data)
                        if data:
                            self.idle_scope = None  # a request is arriving: not idle
                        continue
                    if isinstance(event, h11.Request):
                        self._check_head_size(event)
                        return event
                    return None  # ConnectionClosed
            finally:
                self.idle_scope = None
        if self.server.closing:
            return None
        raise _Timeout()

    def _check_head_size(self, request: h11.Request) -> None:
        """h11 bounds a head only while it is incomplete; a whole one that arrived in a single
        read is measured here (the same limit either way)."""
        size = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if size > self.limits.max_header_bytes:
            raise h11.RemoteProtocolError(
                f"request head larger than {self.limits.max_header_bytes} bytes"
            )

    async def next_body_event(self) -> h11.Data | h11.EndOfMessage | None:
        """The next piece of the request body; None if the client went away, stalled for
        ``timeout`` or broke the framing (then the connection closes after the answer)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self.must_close = True  # bad chunk framing, EOF mid-body
                self.framing_error = _one_line(exc)
                return None
            if event is h11.NEED_DATA:
                with trio.move_on_after(self.limits.timeout):
                    try:
                        data = await self.stream.receive_some(self.limits.read_size)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.broken = True
                        return None
                    self.h11.receive_data(data)
                    continue
                self.must_close = True  # stalled
                return None
            if isinstance(event, h11.Data | h11.EndOfMessage):
                return event
            self.must_close = True  # ConnectionClosed: no more body
            return None

    async def write(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        if self.broken:
            raise ClientDisconnected("the client connection is gone")
        if len(parts) > 1 and sum(len(p) for p in parts) <= _JOIN_LIMIT:
            parts = [b"".join(parts)]
        try:
            with trio.fail_after(self.limits.timeout):
                for part in parts:
                    if part:
                        await self.stream.send_all(part)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.broken = True
            raise ClientDisconnected("the client connection is gone") from None

    async def _answer_error(self, err: ServerError) -> None:
        """An answer of the server itself (the app never saw the request); then close."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers, data = self.server.render_error(err)
        headers = [*headers, (b"connection", b"close")]
        try:
            parts = [
                self.h11.send(h11.Response(status_code=err.status, headers=headers)),
                self.h11.send(h11.Data(data=data)),
                self.h11.send(h11.EndOfMessage()),
            ]
            await self.write(parts)
        except (h11.LocalProtocolError, ClientDisconnected):
            self.broken = True
        logs.log("http_refused", level="debug", reason=err.reason, detail=err.detail)


class _Cycle:
    """One request/response exchange: the ASGI ``receive``/``send`` pair for it."""

    def __init__(self, conn: _Connection, request: h11.Request) -> None:
        self.conn = conn
        self.request = request
        self.method = request.method.decode("ascii").upper()
        self.no_body = self.method == "HEAD"
        self.body_done = False
        self.disconnected = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # http.response.start received
        self.head_sent = False
        self.complete = False
        self.finished = trio.Event()  # the exchange is over (receive() then says disconnect)
        self.expects_continue = conn.h11.they_are_waiting_for_100_continue
        self.sent_continue = False

    def scope(self) -> JsonObject:
        target = self.request.target
        raw_path, _, query = target.partition(b"?")
        text = raw_path.decode("ascii", "replace")
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": self.request.http_version.decode("ascii"),
            "method": self.method,
            "scheme": "http",
            "path": unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(self.request.headers),
            "client": self.conn.client,
            "server": self.conn.local,
            "state": {},
            "extensions": {"peer_cred": self.conn.peer_cred} if self.conn.peer_cred else {},
        }

    async def run(self) -> None:
        try:
            await self.conn.server.app(self.scope(), self.receive, self.send)
        except ClientDisconnected:
            self.conn.broken = True
        except Exception as exc:  # an app bug: answer 500 if we still can, never a traceback
            logs.log(
                "http_app_error",
                level="error",
                reason=type(exc).__name__,
                detail=_one_line(exc),
                method=self.method,
            )
        finally:
            self.finished.set()
        if not self.complete and not self.conn.broken:
            if not self.head_sent:
                self.started = False
                await self._send_error(ServerError(500, "internal", "the request handler failed"))
            else:
                self.conn.broken = True  # a truncated answer: only closing can signal it

    async def _send_error(self, err: ServerError) -> None:
        headers, data = self.conn.server.render_error(err)
        with trio.CancelScope(shield=True):
            try:
                await self.send(
                    {"type": "http.response.start", "status": err.status, "headers": headers}
                )
                await self.send({"type": "http.response.body", "body": data})
            except (ClientDisconnected, h11.LocalProtocolError):
                self.conn.broken = True

    def may_drain(self) -> bool:
        """Whether the rest of the request body may be read after the answer: not when the
        client waits for a ``100 Continue`` it never got (it may never send the body)."""
        conn = self.conn
        if conn.broken or conn.must_close:
            return False
        return self.sent_continue or not self.expects_continue

    def reusable(self) -> bool:
        """Whether the connection can carry another request after this one."""
        conn = self.conn
        return (
            self.complete
            and not conn.broken
            and not conn.must_close
            and not conn.server.closing
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
        )

    async def receive(self) -> Message:
        if self.disconnected:
            return {"type": "http.disconnect"}
        if self.body_done:
            await self._wait_for_end_or_hangup()
            return {"type": "http.disconnect"}
        conn = self.conn
        if conn.h11.they_are_waiting_for_100_continue:
            self.sent_continue = True
            try:
                interim = h11.InformationalResponse(status_code=100, headers=[])
                await conn.write([conn.h11.send(interim)])
            except ClientDisconnected:
                self.disconnected = True
                return {"type": "http.disconnect"}
        event = await conn.next_body_event()
        if event is None:
            self.disconnected = True
            if conn.framing_error and not self.started:
                # The client broke the framing (it did not leave): the server answers 400 and
                # closes; the app, told "disconnect", can no longer send.
                await conn._answer_error(ServerError(400, "bad_request", conn.framing_error))
                conn.broken = True
            return {"type": "http.disconnect"}
        if isinstance(event, h11.EndOfMessage):
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": bytes(event.data), "more_body": True}

    async def _wait_for_end_or_hangup(self) -> None:
        """Until the exchange is over or the client closed its side. Bytes the client sends
        meanwhile (a pipelined request) go to h11's buffer for the next cycle, up to the head
        limit; past it we stop reading and just wait for the end."""
        conn = self.conn
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while len(conn.h11.trailing_data[0]) <= conn.limits.max_header_bytes:
                    try:
                        data = await conn.stream.receive_some(conn.limits.read_size)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    if not data:
                        conn.must_close = True  # the client is gone: no next request
                        nursery.cancel_scope.cancel()
                        return
                    conn.h11.receive_data(data)
                await trio.sleep_forever()

            nursery.start_soon(watch)
            await self.finished.wait()
            nursery.cancel_scope.cancel()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = list(message.get("headers", ()))
            if self.status in _NO_BODY_STATUS:
                self.no_body = True
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        if self.complete:
            raise RuntimeError("http.response.body after the response was complete")
        conn = self.conn
        parts: list[bytes | bytearray | memoryview] = []
        if not self.head_sent:
            headers = self.headers
            headers.append((b"date", conn.server.date.get()))
            if conn.server.closing or conn.must_close:
                headers.append((b"connection", b"close"))
            parts.append(conn.h11.send(h11.Response(status_code=self.status, headers=headers)))
            self.head_sent = True
        body = message.get("body", b"")
        if body and not self.no_body:
            parts.extend(conn.h11.send_with_data_passthrough(h11.Data(data=body)) or ())
        if not message.get("more_body", False):
            parts.append(conn.h11.send(h11.EndOfMessage()))
            self.complete = True
        try:
            await conn.write(parts)
        finally:
            if self.complete:
                self.finished.set()


@attrs.frozen
class PeerCred:
    """Who is at the other end of a Unix socket, as the kernel vouches (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


_UCRED = struct.Struct("3i")


def _addresses(sock: trio.socket.SocketType) -> tuple[Json, Json, PeerCred | None]:
    """(client, server, peer) for the ASGI scope: TCP gives (host, port) pairs; a Unix socket
    has no addresses but the kernel tells us the caller's pid/uid/gid."""
    try:
        if sock.family == socket.AF_UNIX:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            return None, None, PeerCred(*_UCRED.unpack(raw))
        return sock.getpeername()[:2], sock.getsockname()[:2], None
    except OSError:
        return None, None, None


_VERSIONS = frozenset({b"1.0", b"1.1"})


def _refuse_head(request: h11.Request) -> ServerError | None:
    """What h11 lets through but we must not serve: another HTTP version (505), or a body
    framed both ways, ``Content-Length`` with ``Transfer-Encoding`` (RFC 9112 §6.3: the request
    smuggling shape; refused and the connection closed)."""
    if request.http_version not in _VERSIONS:
        version = request.http_version.decode("ascii", "replace")
        return ServerError(505, "http_version_not_supported", f"HTTP/{version}: this is HTTP/1.1")
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return ServerError(
            400, "bad_request", "Content-Length together with Transfer-Encoding is refused"
        )
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


async def serve_h11(
    app: ASGIApp,
    sock: socket.socket,
    limits: ServerLimits,
    *,
    render_error: RenderError = json_error,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the listening ``sock`` until cancelled or until ``shutdown`` is set (then
    gracefully, see the module doc). ``task_status.started()`` once it accepts connections.
    ``render_error`` renders the answers the server gives itself (see ``ServerError``)."""
    sock.setblocking(False)
    server = _Server(app, limits, render_error)
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as acceptor:
            acceptor.start_soon(server.accept_loop, sock, connections)
            task_status.started()
            if shutdown is None:
                await trio.sleep_forever()
            await shutdown.wait()
            acceptor.cancel_scope.cancel()
        server.begin_close()
        with trio.move_on_after(limits.graceful):
            await server.all_closed.wait()
        connections.cancel_scope.cancel()
