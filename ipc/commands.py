"""Commands: request/reply with one named service, carrying OAP/1 frames over DEALER -> ROUTER.

A caller (``CommandClient``) and a service (``CommandServer``) exchange
``[request id, OAP/1 frame]`` messages on the service's ipc socket. The request id is ours (it
matches replies to waiters); the frame's own ``corr_id`` belongs to the caller and is passed
through untouched for logs.

Guarantees:
- bounded: at most ``max_inflight`` requests per client and per server; over it the answer is
  ``busy`` (429) at once, never a queue;
- every request has a deadline: no reply in time is ``timeout`` (504), a service that is not
  running is ``unavailable`` (503) once the deadline passes without a connection; a dead server
  never hangs a caller;
- recovery needs nothing from the caller: zmq reconnects to the restarted service's socket and the
  next request goes through.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import zmq

from ipc import endpoints, oap
from ipc._types import MetricsLike
from ipc.ztrio import TrioSocket

DEFAULT_MAX_INFLIGHT = 128
DEFAULT_TIMEOUT = 5.0
_RID_LEN = 8

Handler = Callable[[oap.Frame], Awaitable[oap.Frame]]


class CommandBusy(oap.OapError):
    def __init__(self, detail: str = "") -> None:
        super().__init__("busy", detail, retry_after=1)


class CommandTimeout(oap.OapError):
    def __init__(self, detail: str = "") -> None:
        super().__init__("timeout", detail)


class CommandUnavailable(oap.OapError):
    def __init__(self, detail: str = "") -> None:
        super().__init__("unavailable", detail, retry_after=1)


_TYPED: dict[str, type[oap.OapError]] = {
    "busy": CommandBusy,
    "timeout": CommandTimeout,
    "unavailable": CommandUnavailable,
}


class _Waiter:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: bytes | None = None


class CommandClient:
    """A caller's handle on one service. Create with ``CommandClient.connect``."""

    def __init__(self, sock: TrioSocket, service: str, max_inflight: int, timeout: float) -> None:
        self._sock = sock
        self.service = service
        self._max_inflight = max_inflight
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[bytes, _Waiter] = {}
        self.late_replies = 0

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        runtime_dir: Path,
        service: str,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        timeout: float = DEFAULT_TIMEOUT,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> AsyncIterator[CommandClient]:
        """Connect to ``service`` (it need not be running yet)."""
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        raw = (ctx or zmq.Context.instance()).socket(zmq.DEALER)
        raw.set(zmq.IMMEDIATE, 1)  # never queue for a service that is not connected
        raw.set(zmq.SNDHWM, max_inflight)
        raw.set(zmq.RCVHWM, max_inflight * 2)
        raw.set(zmq.RECONNECT_IVL, 20)
        raw.set(zmq.RECONNECT_IVL_MAX, 200)
        raw.set(zmq.LINGER, 0)
        sock = TrioSocket(raw)
        try:
            raw.connect(endpoints.command(runtime_dir, service))
            client = cls(sock, service, max_inflight, timeout)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._receive_replies)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            sock.close()

    async def _receive_replies(self) -> None:
        while True:
            for parts in await self._sock.recv_batch(64):
                waiter = self._pending.pop(parts[0], None) if len(parts) == 2 else None
                if waiter is None:
                    self.late_replies += 1  # its caller gave up (deadline) or garbage
                    continue
                waiter.reply = parts[1]
                waiter.done.set()

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def request(self, frame: oap.Frame, *, timeout: float | None = None) -> oap.Frame:
        """Send ``frame`` and return the service's success reply.

        Raises ``CommandBusy`` at once when ``max_inflight`` requests are pending,
        ``CommandUnavailable`` when the service is not connected within the deadline,
        ``CommandTimeout`` when it does not answer within the deadline, and ``OapError`` for an
        error the service answered (or a reply that is not valid OAP/1).
        """
        if len(self._pending) >= self._max_inflight:
            raise CommandBusy(f"{self.service}: {len(self._pending)} requests already in flight")
        deadline = trio.current_time() + (self._timeout if timeout is None else timeout)
        rid = next(self._ids).to_bytes(_RID_LEN, "big")
        waiter = self._pending[rid] = _Waiter()
        try:
            message = [rid, oap.encode(frame)]
            with trio.move_on_at(deadline):
                await self._sock.send_multipart(message)
                await waiter.done.wait()
        finally:
            self._pending.pop(rid, None)
        if waiter.reply is None:
            if waiter.done.is_set():  # pragma: no cover - reply set implies data
                raise CommandUnavailable(self.service)
            raise self._why_no_reply()
        reply = oap.decode(waiter.reply)
        try:
            return oap.raise_for_status(reply)
        except oap.OapError as exc:
            typed = _TYPED.get(exc.reason)
            if typed is None:
                raise
            raise typed(exc.detail) from None

    def _why_no_reply(self) -> oap.OapError:
        if not self._sock.poll_events() & zmq.POLLOUT:
            return CommandUnavailable(f"{self.service} is not running (no connection)")
        return CommandTimeout(f"{self.service} did not answer in time")


class CommandServer:
    """A service's command socket: runs ``handler`` for each request, at most ``max_inflight`` at
    once; over that, callers get ``busy`` at once. A handler's ``OapError`` becomes an error reply;
    any other exception becomes ``internal`` (500) and is reported to ``on_error``."""

    def __init__(
        self,
        runtime_dir: Path,
        service: str,
        handler: Handler,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        reply_timeout: float = DEFAULT_TIMEOUT,
        metrics: MetricsLike | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._endpoint = endpoints.command(runtime_dir, service)
        self.service = service
        self._handler = handler
        self._max_inflight = max_inflight
        self._reply_timeout = reply_timeout
        self._metrics = metrics
        self._on_error = on_error
        self._ctx = ctx or zmq.Context.instance()
        self.inflight = 0
        self.busy_rejections = 0
        self.unroutable_replies = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raw = self._ctx.socket(zmq.ROUTER)
        raw.set(zmq.ROUTER_MANDATORY, 1)  # a reply to a vanished caller errors instead of vanishing
        raw.set(zmq.LINGER, 0)
        sock = TrioSocket(raw)
        try:
            raw.bind(self._endpoint)
            endpoints.secure(self._endpoint)
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    for parts in await sock.recv_batch(64):
                        self._dispatch(nursery, sock, parts)
        finally:
            sock.close()

    def _dispatch(self, nursery: trio.Nursery, sock: TrioSocket, parts: list[bytes]) -> None:
        if len(parts) != 3 or len(parts[1]) != _RID_LEN:
            return  # not one of our callers
        ident, rid, data = parts
        if self.inflight >= self._max_inflight:
            self.busy_rejections += 1
            if self._metrics is not None:
                self._metrics.busy_rejections.labels(queue=self.service).inc()
            busy = CommandBusy(f"{self.service}: {self.inflight} requests in flight")
            self._try_reply(sock, ident, rid, _error_reply(data, busy))
            return
        self.inflight += 1
        nursery.start_soon(self._handle, sock, ident, rid, data)

    async def _handle(self, sock: TrioSocket, ident: bytes, rid: bytes, data: bytes) -> None:
        try:
            try:
                request = oap.decode(data)
            except oap.OapError as exc:
                reply = _error_reply(data, exc)
            else:
                reply = await self._run_handler(request)
        finally:
            self.inflight -= 1
        if not self._try_reply(sock, ident, rid, reply):
            with trio.move_on_after(self._reply_timeout):
                await sock.send_multipart([ident, rid, reply])

    async def _run_handler(self, request: oap.Frame) -> bytes:
        try:
            return oap.encode(await self._handler(request))
        except oap.OapError as exc:
            return oap.encode(oap.error_frame(request, exc))
        except Exception as exc:
            if self._on_error is not None:
                self._on_error(exc)
            internal = oap.OapError("internal", f"{type(exc).__name__} in {self.service}")
            return oap.encode(oap.error_frame(request, internal))

    def _try_reply(self, sock: TrioSocket, ident: bytes, rid: bytes, reply: bytes) -> bool:
        """True when handled (sent, or the caller is gone); False when its queue is full."""
        try:
            return sock.try_send_multipart([ident, rid, reply])
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.unroutable_replies += 1
            return True


def _error_reply(request_bytes: bytes, error: oap.OapError) -> bytes:
    """An error reply that keeps the request's corr_id when the request header is readable."""
    try:
        request = oap.decode(request_bytes)
    except oap.OapError:
        request = oap.Frame(flags=oap.Flags.REQ)
    return oap.encode(oap.error_frame(request, error))
