"""The gateway's own HTTP/1.1 server loop (``kernel.http.server``) on real sockets.

Two parts: (1) every HTTP-level test of ``test_gateway_http`` runs again with the h11 server in
place of hypercorn (the same app, the same fake data plane); (2) what the server itself
guarantees: keep-alive and pipelining, chunked uploads with back-pressure, HEAD, ``Expect:
100-continue``, timeouts, the connection cap, 400 for malformed requests, 500 for a failing app,
no leak when a client vanishes mid-body, graceful shutdown. Responses are parsed by an h11
client, never by hand.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import h11
import pytest
import trio

import tests.support.gateway_fakes as gateway_fakes
from kernel.http.server import RenderError, ServerError, ServerLimits, json_error, serve_h11
from services.gateway.errors import REASONS, render_server_error
from services.gateway.settings import GatewaySettings, parse_settings
from tests.support.node_harness import poll_until

# (1) the HTTP tests of the app, re-run on this server (see the autouse fixture below)
from tests.unit.test_gateway_http import (  # noqa: F401 - collected here, run with the h11 server
    test_a_hung_data_plane_answers_503_within_the_timeout,
    test_bad_ids_unknown_objects_routes_and_methods,
    test_body_caps_answer_413_without_reading_the_excess,
    test_inflight_cap_answers_429_at_once,
    test_integrity_failure_is_never_served_counted_and_quarantined,
    test_large_objects_are_streamed_in_chunks_both_ways,
    test_names_versions_conflicts_and_bad_bodies,
    test_put_is_idempotent_and_get_head_serve_the_verified_bytes,
    test_ranges_304_and_416,
    test_rate_limit_answers_429_with_retry_after,
    test_writes_while_the_data_plane_is_down_get_503_with_retry_after,
)

Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Any]


async def _serve_on_h11(app: Any, sock: socket.socket, timeout: float, **kw: Any) -> None:
    await serve_h11(app, sock, ServerLimits(timeout=timeout), **kw)


@pytest.fixture(autouse=True)
def _h11_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-run tests serve through ``gateway_fakes.serve_on_socket``: make it ours."""
    monkeypatch.setattr(gateway_fakes, "serve_on_socket", _serve_on_h11)


def test_h11_is_the_default_server_and_the_setting_is_strict() -> None:
    assert GatewaySettings().server == "h11"
    assert parse_settings({"server": "hypercorn"}).server == "hypercorn"
    with pytest.raises(ValueError, match="svc-gateway settings"):
        parse_settings({"server": "nginx"})
    with pytest.raises(ValueError, match="svc-gateway settings"):
        parse_settings({"max_connections": 0})


# --- a server around a small app, and an h11 client ----------------------------------------------


@asynccontextmanager
async def served(
    app: ASGI, render_error: RenderError = json_error, **limits: Any
) -> AsyncIterator[tuple[int, trio.Event]]:
    """``app`` on our server on 127.0.0.1; yields (port, shutdown event)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    shutdown = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve_h11,
                    app,
                    sock,
                    ServerLimits(**limits),
                    render_error=render_error,
                    shutdown=shutdown,
                )
            )
            yield port, shutdown
            nursery.cancel_scope.cancel()
    finally:
        sock.close()


@attrs.define
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One connection driven by an h11 client state machine."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[Client]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            yield cls(stream)
        finally:
            await stream.aclose()

    async def send(self, *events: h11.Event) -> None:
        await self.stream.send_all(b"".join(self.conn.send(e) or b"" for e in events))

    async def event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def answer(self) -> Answer:
        head = await self.event()
        while isinstance(head, h11.InformationalResponse):
            head = await self.event()
        assert isinstance(head, h11.Response), head
        body = bytearray()
        while not isinstance(event := await self.event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        return Answer(head.status_code, dict(head.headers), bytes(body))

    async def get(self, target: str, method: str = "GET") -> Answer:
        await self.send(
            h11.Request(method=method, target=target, headers=[("host", "t")]), h11.EndOfMessage()
        )
        answer = await self.answer()
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return answer

    async def closed_by_server(self) -> bool:
        """True once the server closed the connection (EOF or reset)."""
        try:
            return await self.stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True


async def read_body(receive: Any) -> tuple[bytes, list[str]]:
    """The whole request body and the message types seen."""
    body = bytearray()
    kinds = []
    while True:
        message = await receive()
        kinds.append(message["type"])
        if message["type"] == "http.disconnect":
            return bytes(body), kinds
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), kinds


async def reply(send: Any, status: int, body: bytes, headers: Any = None) -> None:
    hdrs = headers if headers is not None else [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers JSON: method, path, query, client port, body length."""
    body, _ = await read_body(receive)
    doc = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "port": scope["client"][1],
        "length": len(body),
    }
    await reply(send, 200, json.dumps(doc).encode())


async def until_served(port: int, deadline: float = 5.0) -> None:
    """Poll until a fresh connection gets an answer other than ``429 busy`` (a slot is free)."""

    async def one() -> bool:
        async with Client.connect(port) as client:
            await client.send(
                h11.Request(
                    method="PUT", target="/", headers=[("host", "t"), ("content-length", "2")]
                ),
                h11.Data(data=b"ok"),
                h11.EndOfMessage(),
            )
            return (await client.answer()).status != 429

    with trio.fail_after(deadline):
        while not await one():
            await trio.sleep(0.02)


def _reason(answer: Answer) -> str:
    doc = answer.json()
    assert set(doc) == {"error", "detail"}
    assert REASONS[doc["error"]] == answer.status
    return str(doc["error"])


# --- (2) what the server guarantees --------------------------------------------------------------


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(10):
        async with served(echo_app) as (port, _), Client.connect(port) as client:
            first = (await client.get("/a%20b?x=1")).json()
            second = (await client.get("/second")).json()
            assert first["path"] == "/a b" and first["query"] == "x=1"
            assert second["port"] == first["port"]  # the same connection was kept

            # three requests in one write: three answers, in order, on the same connection
            raw = b"".join(f"GET /p{i} HTTP/1.1\r\nhost: t\r\n\r\n".encode() for i in range(3))
            await client.stream.send_all(raw)
            paths = []
            leftover = b""
            for _ in range(3):  # an h11 client does not pipeline: one parser per answer
                client.conn = h11.Connection(h11.CLIENT)
                client.conn.send(h11.Request(method="GET", target="/", headers=[("host", "t")]))
                client.conn.send(h11.EndOfMessage())
                if leftover:  # (b"" would mean end of stream to h11)
                    client.conn.receive_data(leftover)
                paths.append((await client.answer()).json()["path"])
                leftover = client.conn.trailing_data[0]
            assert paths == ["/p0", "/p1", "/p2"]


async def test_chunked_upload_streams_with_back_pressure() -> None:
    gate = trio.Event()

    async def slow_reader(scope: Scope, receive: Any, send: Any) -> None:
        await gate.wait()  # nothing is read from the client until the app asks for it
        body, kinds = await read_body(receive)
        await reply(send, 200, json.dumps({"length": len(body), "pieces": len(kinds)}).encode())

    total = 64 << 20
    sent = [0]
    answers: list[h11.Event] = []

    def upload(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"PUT /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
            piece = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
            while sent[0] < total:
                sock.sendall(piece)
                sent[0] += 65536
            sock.sendall(b"0\r\n\r\n")
            conn = h11.Connection(h11.CLIENT)
            conn.send(h11.Request(method="PUT", target="/up", headers=[("host", "t")]))
            events: list[h11.Event] = []
            while not events or not isinstance(events[-1], h11.EndOfMessage):
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                else:
                    events.append(event)
            answers.extend(events)

    with trio.fail_after(60):
        async with served(slow_reader) as (port, _):
            thread = threading.Thread(target=upload, args=(port,), daemon=True)
            thread.start()
            # the client stalls once kernel buffers are full: the server did not read ahead
            last = -1
            while sent[0] != last:
                last = sent[0]
                await trio.sleep(0.3)
            assert sent[0] < total // 4
            gate.set()
            await trio.to_thread.run_sync(thread.join)
    response, data = answers[0], answers[1]
    assert isinstance(response, h11.Response) and response.status_code == 200
    assert isinstance(data, h11.Data)
    doc = json.loads(data.data)
    assert doc["length"] == total and doc["pieces"] > 2


async def test_head_sends_no_body_and_the_connection_stays_usable() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await reply(send, 200, b"0123456789")

    with trio.fail_after(10):
        async with served(app) as (port, _), Client.connect(port) as client:
            head = await client.get("/x", method="HEAD")
            assert head.status == 200 and head.headers[b"content-length"] == b"10"
            assert head.body == b""
            assert (await client.get("/x")).body == b"0123456789"


async def test_responses_without_length_are_chunked() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"ab", b"cd", b""):
            await send({"type": "http.response.body", "body": piece, "more_body": bool(piece)})

    with trio.fail_after(10):
        async with served(app) as (port, _), Client.connect(port) as client:
            answer = await client.get("/")
            assert answer.headers[b"transfer-encoding"] == b"chunked"
            assert answer.body == b"abcd"
            assert (await client.get("/")).body == b"abcd"  # still keep-alive


async def test_expect_100_continue_only_when_the_app_reads_the_body() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/refuse":  # answers without reading: no 100, then close
            await reply(send, 413, b"no")
            return
        body, _ = await read_body(receive)
        await reply(send, 200, body)

    headers = [("host", "t"), ("content-length", "5"), ("expect", "100-continue")]
    with trio.fail_after(10):
        async with served(app) as (port, _):
            async with Client.connect(port) as client:
                await client.send(h11.Request(method="PUT", target="/ok", headers=headers))
                interim = await client.event()
                assert isinstance(interim, h11.InformationalResponse)
                assert interim.status_code == 100
                await client.send(h11.Data(data=b"hello"), h11.EndOfMessage())
                answer = await client.answer()
                assert (answer.status, answer.body) == (200, b"hello")
            async with Client.connect(port) as client:
                await client.send(h11.Request(method="PUT", target="/refuse", headers=headers))
                first = await client.event()
                assert isinstance(first, h11.Response) and first.status_code == 413
                while not isinstance(await client.event(), h11.EndOfMessage):
                    pass
                assert await client.closed_by_server()


async def test_idle_stalled_head_and_stalled_body_time_out() -> None:
    seen: list[list[str]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        _, kinds = await read_body(receive)
        seen.append(kinds)
        await reply(send, 200, b"late")

    with trio.fail_after(20):
        async with served(app, timeout=0.5) as (port, _):
            async with Client.connect(port) as client:  # idle keep-alive: closed quietly
                assert await client.closed_by_server()
            async with Client.connect(port) as client:  # half a request head: 408, closed
                await client.stream.send_all(b"GET / HTTP/1.1\r\nhost:")
                answer = await client.answer()
                assert answer.status == 408 and _reason(answer) == "request_timeout"
                assert await client.closed_by_server()
            async with Client.connect(port) as client:  # a body that stalls: the app is told
                await client.stream.send_all(
                    b"PUT / HTTP/1.1\r\nhost: t\r\ncontent-length: 9\r\n\r\nab"
                )
                client.conn.send(h11.Request(method="PUT", target="/", headers=[("host", "t")]))
                answer = await client.answer()  # what the app still says, then the close
                assert answer.status == 200 and answer.headers[b"connection"] == b"close"
                assert seen == [["http.request", "http.disconnect"]]
                assert await client.closed_by_server()


async def test_a_burst_of_waiting_connections_is_accepted_and_answered() -> None:
    """More connections than one accept batch wait in the backlog at once (clients all told
    "Retry-After: 1" come back together): every one is accepted and answered."""
    with trio.fail_after(30):
        async with served(echo_app) as (port, _):
            # stdlib connects, so the server cannot run between them: 100 (over one batch of 64,
            # under the test socket's backlog of 128) complete in the kernel at once
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            try:
                for sock in socks:  # all in the backlog before the server runs again
                    sock.sendall(b"GET /burst HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                answers = []

                async def read(sock: socket.socket) -> None:
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                    data = b""
                    while chunk := await stream.receive_some(65536):
                        data += chunk
                    answers.append(data)

                async with trio.open_nursery() as nursery:
                    for sock in socks:
                        nursery.start_soon(read, sock)
            finally:
                for sock in socks:
                    sock.close()
            assert len(answers) == 100
            assert all(a.startswith(b"HTTP/1.1 200 ") and b'"/burst"' in a for a in answers)


async def test_the_connection_cap_answers_429_and_frees_slots() -> None:
    with trio.fail_after(20):
        async with served(echo_app, max_connections=2) as (port, _):
            async with Client.connect(port) as one, Client.connect(port) as two:
                await one.get("/")
                await two.get("/")
                async with Client.connect(port) as three:
                    refused = await three.get("/")
                    assert refused.status == 429 and _reason(refused) == "busy"
                    assert refused.headers[b"retry-after"] == b"1"
                    assert await three.closed_by_server()
            await until_served(port)  # both closed: their slots come back


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: t\r\ncontent-length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: t\r\nx: " + b"y" * 40000 + b"\r\n\r\n",
    ],
    ids=["request-line", "content-length", "header-line", "head-too-large"],
)
async def test_a_malformed_request_gets_400_and_the_server_goes_on(raw: bytes) -> None:
    with trio.fail_after(10):
        async with served(echo_app) as (port, _):
            async with Client.connect(port) as client:
                await client.stream.send_all(raw)
                answer = await client.answer()
                assert answer.status == 400 and _reason(answer) == "bad_request"
                assert b"Traceback" not in answer.body
                assert await client.closed_by_server()
            async with Client.connect(port) as client:
                assert (await client.get("/fine")).status == 200


async def test_a_failing_app_answers_500_without_a_traceback() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("secret internals")

    with trio.fail_after(10):
        async with served(app) as (port, _), Client.connect(port) as client:
            answer = await client.get("/")
            assert answer.status == 500 and _reason(answer) == "internal"
            assert b"secret" not in answer.body and b"Traceback" not in answer.body


async def test_a_client_vanishing_mid_body_leaks_nothing() -> None:
    finished: list[list[str]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        _, kinds = await read_body(receive)
        finished.append(kinds)
        await reply(send, 200, b"nobody listens")

    with trio.fail_after(20):
        async with served(app, max_connections=1) as (port, _):
            for _ in range(3):  # with one slot, each new connection proves the last was freed
                await until_served(port)
                async with Client.connect(port) as client:
                    await client.stream.send_all(
                        b"PUT / HTTP/1.1\r\nhost: t\r\ncontent-length: 100000\r\n\r\n" + b"z" * 1000
                    )
                    n = len(finished)
                # the client sent a head and 1% of the body, then went away
                await poll_until(lambda n=n: len(finished) > n, 5, "the app saw the disconnect")
                assert finished[-1][-1] == "http.disconnect"
            await until_served(port)


async def test_graceful_shutdown_finishes_requests_in_progress() -> None:
    entered = trio.Event()
    release = trio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await reply(send, 200, b"done")

    with trio.fail_after(20):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        shutdown = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(serve_h11, app, sock, ServerLimits(graceful=5), shutdown=shutdown)
                )
                async with Client.connect(port) as idle, Client.connect(port) as busy:
                    await idle.get("/")
                    await busy.send(
                        h11.Request(method="GET", target="/slow", headers=[("host", "t")]),
                        h11.EndOfMessage(),
                    )
                    await entered.wait()
                    shutdown.set()
                    assert await idle.closed_by_server()  # idle: closed at once
                    release.set()
                    answer = await busy.answer()  # in progress: finished, then closed
                    assert answer.body == b"done"
                    assert answer.headers[b"connection"] == b"close"
                # serve_h11 returns by itself once its connections are done
        finally:
            sock.close()


async def test_the_server_answers_for_itself_through_the_renderer_it_was_given() -> None:
    seen: list[ServerError] = []

    def plain(err: ServerError) -> tuple[list[tuple[bytes, bytes]], bytes]:
        seen.append(err)
        body = f"{err.status} {err.reason}".encode()
        return [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
        ], body

    with trio.fail_after(10):
        async with (
            served(echo_app, render_error=plain) as (port, _),
            Client.connect(port) as client,
        ):
            await client.stream.send_all(b"NOT HTTP\r\n\r\n")
            answer = await client.answer()
    assert (answer.status, answer.body) == (400, b"400 bad_request")
    assert answer.headers[b"content-type"] == b"text/plain"
    assert [(e.status, e.reason) for e in seen] == [(400, "bad_request")]


def test_the_gateway_renders_server_answers_like_its_own_errors() -> None:
    headers, body = render_server_error(ServerError(429, "busy", "1024 open", retry_after=1))
    assert json.loads(body) == {"error": "busy", "detail": "1024 open"}
    assert (b"retry-after", b"1") in headers and (b"cache-control", b"no-store") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
