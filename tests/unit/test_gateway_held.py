"""A plain GET of an object the gateway holds verified (``GatewayApp._send_held``) answers
exactly what the ordinary path answers, counts the same, and yields to the ordinary path for
everything else: Range, If-None-Match, a changed file, a manifest, a server that does not bound
its writes, the rate limit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from ipc import manifest
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from services.gateway.store_backend import StoreBackend
from services.lib import objstore
from tests.support.gateway_fakes import FakeMetrics
from tests.unit.test_gateway_hot import stored


class Sent:
    """What the app sent for one request."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


class Backend(StoreBackend):
    """The real store backend (reads need no other service), counting what it was asked."""

    def __init__(self, root: Path, hot: int) -> None:
        super().__init__(root, None, None)  # type: ignore[arg-type]  # reads only
        self.hot.limit = hot
        self.held_asked = 0
        self.opened = 0

    def held(self, obj_id: str) -> bytes | None:
        self.held_asked += 1
        return super().held(obj_id)

    async def open_object(self, obj_id: str, prefetch: int, watch: Any = None) -> Any:
        self.opened += 1
        return await super().open_object(obj_id, prefetch, watch)


async def get(app: GatewayApp, path: str, *headers: tuple[bytes, bytes]) -> Sent:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
    }
    sent = Sent()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await app(scope, receive, sent)
    return sent


def app_on(root: Path, *, hot: int = 1 << 20, **settings: Any) -> tuple[GatewayApp, Backend]:
    backend = Backend(root, hot)
    app = GatewayApp(backend, GatewaySettings(**settings), metrics=FakeMetrics())  # type: ignore[arg-type]
    return app, backend


def counted(app: GatewayApp) -> tuple[float, float]:
    """(GET /o/{id} 200s counted, latencies observed for them)."""
    metrics: Any = app.metrics
    requests = metrics.http_requests.get(route="/o/{id}", method="GET", status="200")
    return requests, metrics.request_latency_seconds.get(op="gateway_get_object")


async def test_a_held_get_answers_what_the_ordinary_path_answers(tmp_path: Path) -> None:
    data = os.urandom(4096)
    oid, _ = stored(tmp_path, data)
    cold, cold_backend = app_on(tmp_path, hot=0)
    warm, warm_backend = app_on(tmp_path)
    ordinary = await get(cold, f"/o/{oid}")
    first = await get(warm, f"/o/{oid}")  # read, verified, kept
    held = await get(warm, f"/o/{oid}")
    assert warm_backend.opened == 1 and cold_backend.opened == 1  # the second was held
    for answer in (first, held):
        assert (answer.status, answer.headers, answer.body) == (
            ordinary.status,
            ordinary.headers,
            ordinary.body,
        )
    assert held.body == data
    assert counted(cold) == (1, 1) and counted(warm) == (2, 2)  # counted the same way


@pytest.mark.parametrize(
    ("header", "status"), [((b"range", b"bytes=0-9"), 206), ((b"if-none-match", b"*"), 304)]
)
async def test_range_and_conditional_gets_take_the_ordinary_path(
    tmp_path: Path, header: tuple[bytes, bytes], status: int
) -> None:
    oid, _ = stored(tmp_path, os.urandom(4096))
    app, backend = app_on(tmp_path)
    await get(app, f"/o/{oid}")
    answer = await get(app, f"/o/{oid}", header)
    assert answer.status == status
    if status == 206:
        assert backend.opened == 2 and len(answer.body) == 10


async def test_a_changed_file_or_a_manifest_is_never_answered_from_memory(
    tmp_path: Path,
) -> None:
    data = os.urandom(4096)
    oid, _ = stored(tmp_path, data)
    app, backend = app_on(tmp_path)
    await get(app, f"/o/{oid}")
    file = trio.Path(objstore.object_file(tmp_path, oid))
    await file.write_bytes(bytes(b ^ 1 for b in data))  # corrupted on disk after it was held
    answer = await get(app, f"/o/{oid}")
    assert answer.status == 500 and answer.body != data  # verified again: integrity failure
    assert backend.opened == 2

    body = manifest.MAGIC + os.urandom(64)  # begins like a manifest: never the held path
    mid, _ = stored(tmp_path, body)
    assert backend.held(mid) is None


async def test_hypercorn_or_the_rate_limit_means_the_ordinary_path(tmp_path: Path) -> None:
    oid, _ = stored(tmp_path, os.urandom(4096))
    app, backend = app_on(tmp_path, server="hypercorn")
    await get(app, f"/o/{oid}")
    await get(app, f"/o/{oid}")
    assert backend.held_asked == 0 and backend.opened == 2  # its writes are not bounded

    app, backend = app_on(tmp_path, rate=1.0, burst=1)
    assert (await get(app, f"/o/{oid}")).status == 200
    refused = await get(app, f"/o/{oid}")  # held, but over the rate: answered as before
    assert refused.status == 429 and backend.held_asked == 2 and backend.opened == 1


async def test_the_slow_fault_sends_every_get_down_the_ordinary_path(tmp_path: Path) -> None:
    """The chaos drills' ``slow`` fault delays every request: a held GET too, while it is on."""
    oid, _ = stored(tmp_path, os.urandom(4096))
    delayed = 0
    slowing = False

    async def fault_delay() -> None:
        nonlocal delayed
        delayed += 1
        await trio.lowlevel.checkpoint()

    backend = Backend(tmp_path, 1 << 20)
    app = GatewayApp(
        backend, GatewaySettings(), fault_delay=fault_delay, fault_slowing=lambda: slowing
    )
    await get(app, f"/o/{oid}")  # read and held (the ordinary path: it was not held yet)
    await get(app, f"/o/{oid}")
    assert (delayed, backend.opened) == (1, 1)  # the second was held: no fault to wait on
    slowing = True
    await get(app, f"/o/{oid}")
    assert (delayed, backend.opened) == (2, 2)

    app = GatewayApp(backend, GatewaySettings(), fault_delay=fault_delay)  # cannot tell: always
    await get(app, f"/o/{oid}")
    assert (delayed, backend.opened) == (3, 3)
