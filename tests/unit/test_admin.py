"""kernel.admin: the real app on the node's HTTP server on 127.0.0.1:0, over real sockets."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from ipc import oap
from ipc.proto.admin import ADMIN, AdminAnswer, AdminCall
from kernel.admin import (
    AdminBindError,
    build_admin_app,
    build_control_app,
    serve_admin,
    serve_control,
)
from kernel.admin.control import ServiceRoute
from kernel.admin_calls import answer_json, with_admin_routes
from kernel.exposes import AdminRoute
from kernel.health import HealthState, ServiceState
from kernel.metrics import MULTIPROC_ENV, Metrics
from services.storage import admin as storage_admin
from services.storage.exposes import EXPOSES as storage_exposes
from tests.support.tools import assert_promtool_accepts, check_metrics

DEADLINE = 10


class _FakeKeeper:
    """svc-storage's housekeeper as the storage admin routes use it: answers what ``control``
    says (an ``OapError`` to raise)."""

    def __init__(self, control: FakeControl) -> None:
        self._control = control

    async def gc(self, grace: float, dry_run: bool) -> Any:
        if isinstance(self._control.storage_reply, Exception):
            raise self._control.storage_reply
        return self._control.storage_reply


class FakeControl:
    """A NodeControl stand-in that records what the admin plane asked of it."""

    def __init__(self, metrics: Metrics) -> None:
        self.health = HealthState()
        self.metrics = metrics
        self.stopped = trio.Event()
        self.reload_outcome: int | Exception = 2
        self.subscribed = trio.Event()
        self.unsubscribed = trio.Event()
        self.topics: list[str] = []
        self.publish: trio.MemorySendChannel[dict] | None = None
        self.audited: list[tuple[str, dict[str, str]]] = []
        self.last_reload: dict[str, list[str]] = {}
        self.passport_requests: list[Any] = []
        self.passport_reply: Any = None
        self.storage_reply: Any = None
        self._routes = (
            ServiceRoute("svc-overlay", AdminRoute("/peers", plane="both")),
            *(ServiceRoute("svc-storage", route) for route in storage_exposes.routes),
            ServiceRoute("svc-broken", AdminRoute("/broken", plane="both")),  # answers no JSON
            ServiceRoute("svc-silent", AdminRoute("/silent", plane="both")),  # never answers
        )

        async def peers(_call: AdminCall) -> AdminAnswer:
            return answer_json(200, {"peers": [{"node_id": "node:" + "a" * 64, "state": "idle"}]})

        async def no_other_frames(frame: oap.Frame) -> oap.Frame:
            raise AssertionError("only admin calls reach a service in these tests")

        async def broken(_call: AdminCall) -> AdminAnswer:
            return AdminAnswer(status=200, body=b"<html>not json</html>")

        answers = {"/peers": peers, "/broken": broken}
        answers.update(storage_admin.admin_routes(_FakeKeeper(self)))  # type: ignore[arg-type]
        self._service_side = with_admin_routes(no_other_frames, answers)

    def node_info(self) -> dict[str, Any]:
        return {
            "version": "0.1.0",
            "profile": "micronode",
            "amnesia": True,
            "pq": "off",
            "config_version": 1,
            "config_sha": "ab" * 32,
        }

    async def stop(self) -> None:
        self.stopped.set()

    def audit(self, act: str, **detail: object) -> None:
        self.audited.append((act, {k: str(v) for k, v in detail.items()}))

    def service_routes(self) -> tuple[ServiceRoute, ...]:
        return self._routes

    async def call_service(self, service: str, call: AdminCall, timeout: float) -> AdminAnswer:
        """Through the services' real side (``with_admin_routes``) and the real codec."""
        if service == "svc-silent":
            raise oap.OapError("timeout", f"no answer in {timeout} s")
        frame = await self._service_side(ADMIN.request_frame(call))
        return ADMIN.parse_reply(frame, call)

    async def passport(self, request: Any) -> Any:
        self.passport_requests.append(request)
        if isinstance(self.passport_reply, Exception):
            raise self.passport_reply
        return self.passport_reply

    async def release(self, service: str) -> None:
        status = self.health.get(service)
        if status is None:
            raise KeyError(service)
        if status.state is not ServiceState.QUARANTINED:
            raise ValueError(f"{service} is not quarantined")
        self.health.update(service, state=ServiceState.STARTING)

    async def reload(self) -> int:
        if isinstance(self.reload_outcome, Exception):
            raise self.reload_outcome
        return self.reload_outcome

    @asynccontextmanager
    async def open_events(
        self, topic_prefix: str, history: bool = False
    ) -> AsyncIterator[trio.MemoryReceiveChannel]:
        send, receive = trio.open_memory_channel[dict](16)
        self.topics.append(topic_prefix)
        self.publish = send
        self.subscribed.set()
        try:
            async with receive:
                yield receive
        finally:
            self.unsubscribed.set()


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


async def http(
    addr: str,
    method: str,
    target: str,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Reply:
    """One request over a fresh connection, parsed by h11: TCP to "host:port", or the Unix
    socket when ``addr`` is a path (the control plane)."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("host", "localhost" if addr.startswith("/") else addr), ("connection", "close")]
    if method == "POST" or body:
        headers.append(("content-length", str(len(body))))
    headers += extra or []
    if addr.startswith("/"):
        opened = await trio.open_unix_socket(addr)
    else:
        host, _, port = addr.rpartition(":")
        opened = await trio.open_tcp_stream(host, int(port))
    async with opened as stream:
        await stream.send_all(
            conn.send(h11.Request(method=method, target=target, headers=headers))
            + (conn.send(h11.Data(data=body)) if body else b"")
            + conn.send(h11.EndOfMessage())
        )
        response, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                hdrs = {k.decode(): v.decode() for k, v in response.headers}
                return Reply(response.status_code, hdrs, body)


class EventStream:
    """The client side of GET /events: yields JSON lines as they arrive."""

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        self.stream, self.conn = stream, conn
        self.response: h11.Response | None = None
        self.ended = False
        self._buffer = b""

    async def _pump(self) -> bool:
        """Process one h11 event; False once the response is complete."""
        event = self.conn.next_event()
        if event is h11.NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            self.response = event
        elif isinstance(event, h11.Data):
            self._buffer += event.data
        elif isinstance(event, h11.EndOfMessage):
            self.ended = True
            return False
        return True

    async def started(self) -> h11.Response:
        while self.response is None:
            await self._pump()
        return self.response

    async def next_event(self) -> dict:
        while b"\n" not in self._buffer:
            assert await self._pump(), "stream ended"
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    async def wait_end(self) -> None:
        while await self._pump():
            pass


@asynccontextmanager
async def event_stream(addr: str, target: str) -> AsyncIterator[EventStream]:
    host, _, port = addr.rpartition(":")
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        request = h11.Request(method="GET", target=target, headers=[("host", addr)])
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        yield EventStream(stream, conn)


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(MULTIPROC_ENV, "placeholder")
    monkeypatch.delenv(MULTIPROC_ENV)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    m = Metrics(tmp_path / "metrics", amnesia=True, reset=True)
    yield m
    m.close()


@pytest.fixture
def control(metrics: Metrics) -> FakeControl:
    return FakeControl(metrics)


@pytest.fixture
async def addr(control: FakeControl, nursery: trio.Nursery) -> str:
    app = build_admin_app(control, retry_after=7, max_event_streams=1)
    with trio.fail_after(DEADLINE):
        return await nursery.start(serve_admin, app, "127.0.0.1:0")


@pytest.fixture
async def ctl(control: FakeControl, nursery: trio.Nursery, tmp_path: Path) -> str:
    """The control plane of the same node, on ``ctl.sock`` in a private dir."""
    runtime_dir = tmp_path / "rt"
    runtime_dir.mkdir(mode=0o700)
    with trio.fail_after(DEADLINE):
        return str(await nursery.start(serve_control, build_control_app(control), runtime_dir))


def scrape_value(control: FakeControl, name: str, **labels: str) -> float:
    body, _ = control.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == {**labels, "amnesia": "on"}:
                return sample.value
    return 0.0


async def test_reports_a_real_port_and_healthz(addr: str) -> None:
    host, _, port = addr.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    with trio.fail_after(DEADLINE):
        reply = await http(addr, "GET", "/healthz")
    assert (reply.status, reply.json()) == (200, {"ok": True})


async def test_readyz_503_with_retry_after_until_everything_is_up(
    addr: str, control: FakeControl
) -> None:
    control.health.register("svc-storage", required=True)
    control.health.register("svc-extra", required=False)
    with trio.fail_after(DEADLINE):
        reply = await http(addr, "GET", "/readyz")
        assert reply.status == 503
        assert reply.headers["retry-after"] == "7"
        assert reply.json() == {
            "degraded": True,
            "missing": ["config", "bus", "svc-storage"],
            "retry_after": 7,
        }
        control.health.config_loaded = control.health.bus_up = True
        control.health.set("svc-storage", True)
        reply = await http(addr, "GET", "/readyz")
        assert (reply.status, reply.json()) == (200, {"ready": True})
        assert "retry-after" not in reply.headers
        control.health.update("svc-extra", state=ServiceState.QUARANTINED)
        reply = await http(addr, "GET", "/readyz")
        assert reply.status == 503
        assert reply.json()["missing"] == ["svc-extra"]


async def test_version_is_node_info_plus_services(addr: str, control: FakeControl) -> None:
    control.health.register("svc-index", required=True)
    control.health.update("svc-index", pid=4242, restarts=3, started_at=trio.current_time())
    control.health.register("svc-dht", required=False)
    with trio.fail_after(DEADLINE):
        reply = await http(addr, "GET", "/version")
    assert reply.status == 200
    body = reply.json()
    services = body.pop("services")
    # with an overlay: each peer's negotiated PQ posture
    assert body.pop("peers") == [{"node_id": "node:" + "a" * 64, "pq": ""}]
    assert body == control.node_info()
    assert [s["name"] for s in services] == ["svc-dht", "svc-index"]
    index = services[1]
    assert set(index) == {
        "name",
        "pid",
        "state",
        "restarts",
        "uptime",
        "required",
        "last_crash",
        "last_crash_at",
        "held",
    }
    assert (index["pid"], index["state"], index["restarts"], index["required"]) == (
        4242,
        "starting",
        3,
        True,
    )
    assert index["uptime"] >= 0


async def test_metrics_scrape_counts_requests_by_template(
    addr: str, ctl: str, control: FakeControl
) -> None:
    control.health.register("svc-a", required=True)
    with trio.fail_after(DEADLINE):
        await http(addr, "GET", "/healthz")
        await http(ctl, "POST", "/release/svc-a")  # 409
        await http(ctl, "POST", "/release/svc-b")  # 404
        await http(addr, "GET", "/no/such/thing")
        await http(addr, "BREW", "/healthz")
        reply = await http(addr, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    counts = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        if family.name == "http_requests"
        for s in family.samples
        if s.name == "http_requests_total"
    }
    assert counts == {
        ("/healthz", "GET", "200"): 1.0,
        ("/release/{service}", "POST", "409"): 1.0,
        ("/release/{service}", "POST", "404"): 1.0,
        ("unmatched", "GET", "404"): 1.0,
        ("/healthz", "OTHER", "405"): 1.0,
    }


async def test_promtool_accepts_the_served_scrape(addr: str) -> None:
    with trio.fail_after(DEADLINE):
        await http(addr, "GET", "/healthz")
        reply = await http(addr, "GET", "/metrics")
        await assert_promtool_accepts(reply.body)  # CI fails rather than skips without it
    assert b'amnesia="on"' in reply.body


async def test_stop_answers_202_then_stops(ctl: str, control: FakeControl) -> None:
    with trio.fail_after(DEADLINE):
        reply = await http(ctl, "POST", "/stop")
        assert (reply.status, reply.json()) == (202, {"stopping": True})
        await control.stopped.wait()


async def test_release_200_404_409(ctl: str, control: FakeControl) -> None:
    control.health.register("svc-a", required=True)
    with trio.fail_after(DEADLINE):
        reply = await http(ctl, "POST", "/release/svc-a")
        assert reply.status == 409
        assert reply.json()["error"] == "not_quarantined"
        control.health.update("svc-a", state=ServiceState.QUARANTINED)
        reply = await http(ctl, "POST", "/control/release/svc-a")  # the /control alias
        assert (reply.status, reply.json()) == (200, {"released": "svc-a"})
        assert control.health.get("svc-a").state is ServiceState.STARTING
        reply = await http(ctl, "POST", "/release/svc-nope")
        assert reply.status == 404
        assert reply.json()["error"] == "unknown_service"


async def test_reload_200_and_422_one_line(ctl: str, control: FakeControl) -> None:
    with trio.fail_after(DEADLINE):
        reply = await http(ctl, "POST", "/reload")
        assert (reply.status, reply.json()) == (200, {"config_version": 2, "changes": {}})
        control.reload_outcome = ValueError("bus.capacity must be > 0, got 0\n  (in node.toml)")
        reply = await http(ctl, "POST", "/reload")
    assert reply.status == 422
    assert reply.json() == {"error": "config_invalid", "detail": "bus.capacity must be > 0, got 0"}


async def test_unknown_path_404_and_wrong_method_405(addr: str) -> None:
    with trio.fail_after(DEADLINE):
        missing = await http(addr, "GET", "/nope")
        trailing = await http(addr, "GET", "/healthz/")
        post_health = await http(addr, "POST", "/healthz")
    assert (missing.status, missing.json()) == (404, {"error": "not_found"})
    assert trailing.status == 404
    assert (post_health.status, post_health.headers["allow"]) == (405, "GET")


ACT_PATHS = (
    "/control/stop",
    "/control/reload",
    "/control/release/svc-a",
    "/stop",
    "/reload",
    "/control/fault/svc-a?fault=kill",
    "/fault/svc-a?fault=kill",
    "/release/svc-a",
)
HOSTILE = [("origin", "http://evil.example"), ("content-type", "application/x-www-form-urlencoded")]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_no_tcp_request_can_act(addr: str, control: FakeControl, method: str) -> None:
    """DESIGN.md §6: the TCP plane is read-only, whatever the method, Origin or content type."""
    control.health.register("svc-a", required=True)
    control.health.update("svc-a", state=ServiceState.QUARANTINED)
    with trio.fail_after(DEADLINE):
        for path in ACT_PATHS:
            reply = await http(addr, method, path, HOSTILE)
            assert reply.status == 404, (method, path, reply.status)
        for path in ("/healthz", "/readyz", "/version", "/metrics"):
            if method != "GET":
                assert (await http(addr, method, path, HOSTILE)).status == 405
    assert not control.stopped.is_set()
    assert control.health.get("svc-a").state is ServiceState.QUARANTINED


async def test_control_socket_is_0600(ctl: str) -> None:
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(ctl).st_mode)


async def test_control_refuses_a_foreign_uid_logged_and_counted(
    control: FakeControl, nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """SO_PEERCRED decides, not the socket's mode: even a loosened socket refuses other uids."""
    runtime_dir = tmp_path / "rt"
    runtime_dir.mkdir(mode=0o700)
    stranger_only = build_control_app(control, allowed_uids={os.getuid() + 4242})
    with trio.fail_after(DEADLINE):
        ctl = str(await nursery.start(serve_control, stranger_only, runtime_dir))
        reply = await http(ctl, "POST", "/stop")
        health = await http(ctl, "GET", "/healthz")
    assert (reply.status, reply.json()["error"]) == (403, "not_permitted")
    assert health.status == 403
    assert not control.stopped.is_set()
    assert scrape_value(control, "rejected_total", reason="peer_uid") == 2
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    refusals = [r for r in logged if r.get("event") == "control_refused"]
    assert len(refusals) == 2 and refusals[0]["uid"] == os.getuid()


async def test_events_stream_live_until_client_leaves(addr: str, control: FakeControl) -> None:
    crashed = {"type": "ServiceCrashed", "service": "svc-index", "reason": "exit 1"}
    with trio.fail_after(DEADLINE):
        async with event_stream(addr, "/events?topic=kernel.service") as client:
            response = await client.started()
            assert response.status_code == 200
            assert dict(response.headers)[b"content-type"] == b"application/x-ndjson"
            await control.subscribed.wait()
            assert control.topics == ["kernel.service"]
            assert control.publish is not None
            await control.publish.send(crashed)
            assert await client.next_event() == crashed
            await control.publish.send({"type": "Shutdown"})
            assert await client.next_event() == {"type": "Shutdown"}
        # The client hung up: the server must notice and release the subscription.
        await control.unsubscribed.wait()


async def test_events_stream_ends_when_node_closes_it(addr: str, control: FakeControl) -> None:
    with trio.fail_after(DEADLINE):
        async with event_stream(addr, "/events") as client:
            await client.started()
            await control.subscribed.wait()
            assert control.topics == ["kernel"]
            assert control.publish is not None
            await control.publish.send({"type": "ConfigUpdated", "version": 3})
            await control.publish.aclose()
            assert await client.next_event() == {"type": "ConfigUpdated", "version": 3}
            await client.wait_end()
        assert client.ended


async def test_events_streams_are_capped(addr: str, control: FakeControl) -> None:
    with trio.fail_after(DEADLINE):
        async with event_stream(addr, "/events") as first:
            await first.started()
            await control.subscribed.wait()
            second = await http(addr, "GET", "/events")
            assert second.status == 503
            assert second.json()["error"] == "too_many_streams"
            assert "retry-after" in second.headers
        bad = await http(addr, "GET", "/events?topic=")
        assert (bad.status, bad.json()["error"]) == (400, "bad_topic")


async def test_slow_events_client_never_blocks_the_node(control: FakeControl) -> None:
    """Driven in-process: a client that never reads must cost itself events, not the publisher."""
    app = build_admin_app(control, events_buffer=2)
    leave = trio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            await trio.sleep_forever()  # the socket never drains (the head went out)

    scope = {"type": "http", "method": "GET", "path": "/events", "query_string": b""}
    total = 50
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, receive, send)
            await control.subscribed.wait()
            assert control.publish is not None
            for n in range(total):
                await control.publish.send({"type": "ConfigUpdated", "version": n})
            # Publishing completed although nothing was written: everything past the client's
            # buffer (2) and the one event stuck in its write was dropped and counted.
            await trio.testing.wait_all_tasks_blocked()
            dropped = scrape_value(control, "queue_dropped_total", queue="admin_events")
            assert total - 3 <= dropped <= total - 2
            leave.set()
        await control.unsubscribed.wait()


async def test_bind_in_use_is_one_clear_error(control: FakeControl) -> None:
    app = build_admin_app(control)
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with trio.fail_after(DEADLINE), pytest.raises(AdminBindError) as err:
            await serve_admin(app, f"127.0.0.1:{port}")  # fails before it would serve
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "\n" not in message


@pytest.mark.parametrize("bind", ["localhost", "127.0.0.1:http", ":9909", "127.0.0.1:70000"])
async def test_malformed_bind_is_one_clear_error(control: FakeControl, bind: str) -> None:
    with trio.fail_after(DEADLINE), pytest.raises(AdminBindError, match="HOST:PORT"):
        await serve_admin(build_admin_app(control), bind)


async def test_shutdown_event_stops_the_server(control: FakeControl) -> None:
    shutdown = trio.Event()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                lambda task_status: serve_admin(
                    build_admin_app(control),
                    "127.0.0.1:0",
                    shutdown=shutdown,
                    task_status=task_status,
                )
            )
            assert (await http(bound, "GET", "/healthz")).status == 200
            shutdown.set()
        # serve_admin returned on its own; the port no longer accepts connections.
        host, _, port = bound.rpartition(":")
        with pytest.raises(OSError):
            await trio.open_tcp_stream(host, int(port))


async def test_cancelling_the_server_ends_open_streams(control: FakeControl) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_admin, build_admin_app(control), "127.0.0.1:0")
            async with event_stream(bound, "/events") as client:
                await client.started()
                await control.subscribed.wait()
                nursery.cancel_scope.cancel()
        await control.unsubscribed.wait()


async def test_a_failing_handler_is_a_json_500(
    addr: str, control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    control.node_info = broken  # type: ignore[method-assign]
    with trio.fail_after(DEADLINE):
        reply = await http(addr, "GET", "/version")
        assert (reply.status, reply.json()) == (500, {"error": "internal"})
        assert (await http(addr, "GET", "/healthz")).status == 200, "the server must survive"
    assert "handler failed: GET /version" in caplog.text
    assert scrape_value(
        control, "http_requests_total", route="/version", method="GET", status="500"
    )


def test_build_rejects_nonsense_limits(control: FakeControl) -> None:
    with pytest.raises(ValueError):
        build_admin_app(control, events_buffer=0)


def test_promtool_rejects_garbage_so_the_check_means_something() -> None:
    assert check_metrics(b"# TYPE x counter\nx{a=} 1\n") != []  # CI fails without promtool
    # the waiver is for the seed names' unit lint only, never for another name
    assert check_metrics(b"# HELP other_ms x\n# TYPE other_ms gauge\nother_ms 1\n") != []
    assert (
        check_metrics(
            b"# HELP ron_dht_lookup_ms x\n# TYPE ron_dht_lookup_ms gauge\nron_dht_lookup_ms 1\n"
        )
        == []
    )


# --- tokens and audit on the control socket ----------------------------------------------------


async def post_json(ctl: str, path: str, doc: Any) -> Reply:
    return await http(ctl, "POST", path, body=json.dumps(doc).encode())


async def test_mint_checks_its_body_and_passes_the_caller(ctl: str, control: FakeControl) -> None:
    from ipc.proto import passport as proto

    control.passport_reply = proto.Minted("ron1.secret", "ab" * 16, "k1", 1.0)
    with trio.fail_after(DEADLINE):
        good = await post_json(ctl, "/token/mint", {"ops": "put,name", "ttl": 60, "prefix": "a/"})
        bad = [
            await post_json(ctl, "/token/mint", doc)
            for doc in ({"ops": ["steal"]}, {"ttl": -1}, {"ttl": True}, {"wat": 1}, [1])
        ]
    assert good.status == 200 and good.json()["token"] == "ron1.secret"
    request = control.passport_requests[0]
    assert (request.ops, request.ttl, request.prefix) == (("put", "name"), 60.0, "a/")
    assert request.caller == f"uid {os.getuid()} pid {os.getpid()}"
    assert [(r.status, r.json()["error"]) for r in bad] == [(400, "bad_request")] * 5
    assert len(control.passport_requests) == 1  # nothing invalid reached svc-passport


async def test_passport_down_is_503_and_acts_are_audited(ctl: str, control: FakeControl) -> None:
    from kernel.passport_link import PassportUnavailable

    control.passport_reply = PassportUnavailable("svc-passport did not answer: timeout")
    control.health.register("svc-a", required=True)
    control.health.update("svc-a", state=ServiceState.QUARANTINED)
    with trio.fail_after(DEADLINE):
        down = await http(ctl, "POST", "/token/rotate")
        await http(ctl, "POST", "/release/svc-a")
        await http(ctl, "POST", "/reload")
        await http(ctl, "POST", "/stop")
    assert (down.status, down.json()["error"], down.headers["retry-after"]) == (
        503,
        "unavailable",
        "1",
    )
    acts = [(act, detail.get("service")) for act, detail in control.audited]
    assert acts == [("release", "svc-a"), ("reload", None), ("stop", None)]
    assert all(d["caller"].startswith("uid ") for _, d in control.audited)


async def test_store_gc_errors_are_the_canon_statuses(ctl: str, control: FakeControl) -> None:
    """``POST /store/gc``: a GC already running is 429 ``busy`` with Retry-After (the canon's
    code, as specs/storage-protocol.md says), svc-index down is 503, a bad grace is 400."""
    with trio.fail_after(DEADLINE):
        control.storage_reply = oap.OapError("busy", "a GC is already running")
        busy = await http(ctl, "POST", "/store/gc", body=b"{}")
        control.storage_reply = oap.OapError("unavailable", "svc-index did not list the names")
        down = await http(ctl, "POST", "/store/gc", body=b"{}")
        short = await http(ctl, "POST", "/store/gc", body=b'{"grace": 5}')
    assert (busy.status, busy.json()["error"], busy.headers.get("retry-after")) == (
        429,
        "busy",
        "1",
    )
    assert (down.status, down.headers.get("retry-after")) == (503, "1")
    assert short.status == 400 and "at least 60" in short.json()["detail"]


async def test_the_tcp_plane_relays_only_read_only_service_views(addr: str) -> None:
    """A stranger on the TCP admin plane reaches a service's GET views and nothing else: a
    control-only service route does not exist there, a write to a view is 405."""
    with trio.fail_after(DEADLINE):
        view = await http(addr, "GET", "/peers")
        control_only = await http(addr, "GET", "/store/objects")
        write = await http(addr, "POST", "/peers", body=b"{}")
    assert view.status == 200 and view.json()["peers"]
    assert (control_only.status, control_only.json()["error"]) == (404, "not_found")
    assert (write.status, write.headers["allow"]) == (405, "GET")


async def test_a_relayed_route_refuses_what_a_stranger_would_send(ctl: str) -> None:
    """Oversized bodies and bad ids are the caller's 400 before or at the service; a service
    that answers no JSON is a 502, one that does not answer a 503 with Retry-After."""
    with trio.fail_after(DEADLINE):
        huge = await http(ctl, "POST", "/store/gc", body=b" " * (16 * 1024 + 1))
        bad_id = await http(ctl, "PUT", "/store/pins/not-an-id")
        broken = await http(ctl, "GET", "/broken")
        silent = await http(ctl, "GET", "/silent")
    assert (huge.status, huge.json()["error"]) == (400, "bad_request")
    assert (bad_id.status, bad_id.json()["error"]) == (400, "bad_request")
    assert (broken.status, broken.json()["error"]) == (502, "bad_gateway")
    assert (silent.status, silent.headers["retry-after"]) == (503, "1")
    assert silent.json() == {"error": "unavailable", "detail": "svc-silent did not answer: timeout"}
