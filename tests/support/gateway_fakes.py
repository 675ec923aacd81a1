"""The gateway app over in-memory fakes (backend, metrics), served on 127.0.0.1:0 for tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import blake3
import trio

from ipc.proto.index import NameList
from kernel.http.server import ServerLimits, serve_h11
from services.gateway.app import GatewayApp
from services.gateway.backend import NameRecord, Stored
from services.gateway.errors import GatewayError, render_server_error
from services.gateway.server import serve_on_socket
from services.gateway.settings import GatewaySettings
from tests.support.node_harness import Response, http_request


def b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


# --- fakes --------------------------------------------------------------------------------------


@attrs.define
class FakeObject:
    data: bytes
    head: bytes
    reads: list[int]

    @property
    def size(self) -> int:
        return len(self.data)

    async def prepare(self, start: int, end: int) -> None:
        pass

    async def read(self, offset: int, n: int) -> bytes:
        self.reads.append(n)
        return self.data[offset : offset + n]

    async def aclose(self) -> None:
        pass


class FakeUpload:
    def __init__(self, backend: FakeBackend, max_size: int) -> None:
        self.backend = backend
        self.max_size = max_size
        self.buf = bytearray()
        self.aborted = False

    async def write(self, data: bytes) -> None:
        if len(self.buf) + len(data) > self.max_size:
            raise GatewayError("object_too_large", "cap")
        self.buf += data
        self.backend.largest_write = max(self.backend.largest_write, len(data))

    async def commit(self) -> Stored:
        return self.backend.store(bytes(self.buf))

    async def abort(self) -> None:
        self.aborted = True


class FakeBackend:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.names: dict[str, tuple[str, int, str | None]] = {}
        self.types: dict[str, str] = {}
        self.corrupt: set[str] = set()
        self.quarantined: list[str] = []
        self.reads: list[int] = []
        self.largest_write = 0
        self.writes_down = False
        self.gate: trio.Event | None = None  # when set, opens wait for it
        self.entered = 0
        self.mail_requests: list[object] = []
        self.mail_answer: Callable[[object], object] | None = None
        self.free: tuple[int, int] | None = None  # what free_space() says (None: unknown)

    def store(self, data: bytes) -> Stored:
        if self.writes_down:
            raise GatewayError("unavailable", "svc-storage is not running", retry_after=1)
        obj_id = b3(data)
        created = obj_id not in self.objects
        self.objects[obj_id] = data
        return Stored(obj_id, len(data), created)

    def held(self, obj_id: str) -> bytes | None:
        return None  # nothing at hand: every GET opens

    async def open_object(self, obj_id: str, prefetch: int, watch: object = None) -> FakeObject:
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        if obj_id in self.corrupt:
            raise GatewayError("integrity_failure", "mismatch")
        if obj_id not in self.objects:
            raise GatewayError("not_found", obj_id)
        data = self.objects[obj_id]
        return FakeObject(data, data[:prefetch], self.reads)

    async def exists(self, obj_id: str) -> bool:
        return obj_id in self.objects

    async def put_small(self, data: bytes) -> Stored:
        return self.store(data)

    async def free_space(self, *, fresh: bool = False) -> tuple[int, int] | None:
        return self.free

    async def begin_upload(self, max_size: int) -> FakeUpload:
        return FakeUpload(self, max_size)

    async def quarantine(self, obj_id: str) -> None:
        if self.writes_down:
            raise GatewayError("unavailable", "svc-storage is not running", retry_after=1)
        self.quarantined.append(obj_id)

    async def get_name(self, name: str) -> NameRecord:
        if name not in self.names:
            raise GatewayError("not_found", name)
        return NameRecord(name, *self.names[name])

    async def put_name(
        self, name: str, obj_id: str, expect: int | None, type_: str | None = None
    ) -> NameRecord:
        if self.writes_down:
            raise GatewayError("unavailable", "svc-index is not running", retry_after=1)
        current = self.names.get(name, ("", 0, None))[1]
        if expect is not None and expect != current:
            raise GatewayError("version_conflict", f"version is {current}")
        served = self.types.get(obj_id) if type_ is None else type_
        self.names[name] = (obj_id, current + 1, served)
        return NameRecord(name, *self.names[name])

    async def set_type(self, obj_id: str, type_: str) -> None:
        if self.writes_down:
            raise GatewayError("unavailable", "svc-index is not running", retry_after=1)
        self.types[obj_id] = type_

    async def list_names(self, prefix: str, after: str, limit: int) -> NameList:
        found = sorted(n for n in self.names if n.startswith(prefix) and n > after)
        records = tuple(NameRecord(n, *self.names[n]) for n in found[:limit])
        return NameList(names=records, more=len(found) > limit)

    async def mail(self, request: object, timeout: float) -> object:
        """Mailbox requests: the answer ``mail_answer`` gives (None: svc-mailbox is down)."""
        self.mail_requests.append(request)
        if self.mail_answer is None:
            raise GatewayError("unavailable", "svc-mailbox is not running", retry_after=1)
        return self.mail_answer(request)


class _Child:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, n: float = 1.0) -> None:
        self.value += n

    def observe(self, v: float) -> None:
        self.value += 1


class _Family:
    def __init__(self) -> None:
        self.children: dict[tuple[tuple[str, str], ...], _Child] = {}

    def labels(self, **labels: str) -> _Child:
        return self.children.setdefault(tuple(sorted(labels.items())), _Child())

    def get(self, **labels: str) -> float:
        child = self.children.get(tuple(sorted(labels.items())))
        return child.value if child else 0.0


class FakeMetrics:
    def __init__(self) -> None:
        self.http_requests = _Family()
        self.request_latency_seconds = _Family()
        self.rejected = _Family()
        self.integrity_fail = _Child()
        self.auth_failures = _Family()


# --- a served app and a client ------------------------------------------------------------------


@attrs.define
class Served:
    port: int
    backend: FakeBackend
    metrics: FakeMetrics
    app: GatewayApp

    async def req(self, method: str, path: str, body: Any = None, **headers: str) -> Response:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return await trio.to_thread.run_sync(
            http_request, "127.0.0.1", self.port, method, path, body, hdrs
        )

    async def put(self, data: bytes) -> Response:
        return await self.req("PUT", "/o", data)

    async def raw(self, head: bytes) -> bytes:
        """Send raw request bytes (headers only) and read until the server closes or answers."""
        with trio.socket.socket() as s:
            await s.connect(("127.0.0.1", self.port))
            await s.send(head)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data


@asynccontextmanager
async def serve(guard: Any = None, h11: bool = False, **settings: Any) -> AsyncIterator[Served]:
    """The gateway app over a ``FakeBackend`` on 127.0.0.1:0; ``guard``: writes need tokens;
    ``h11``: on the node's own server (``kernel.http.server``, the gateway's default) instead of
    hypercorn (the reference)."""
    backend = FakeBackend()
    metrics = FakeMetrics()
    app = GatewayApp(backend, GatewaySettings(**settings), metrics=metrics, guard=guard)  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    async with trio.open_nursery() as nursery:
        if h11:
            limits = ServerLimits(timeout=settings.get("timeout", 5.0))
            await nursery.start(
                partial(serve_h11, app, sock, limits, render_error=render_server_error)
            )
        else:
            await nursery.start(serve_on_socket, app, sock, settings.get("timeout", 5.0))
        try:
            yield Served(port, backend, metrics, app)
        finally:
            nursery.cancel_scope.cancel()
    sock.close()
