"""Hostile input against the gateway on the node's own HTTP server (issue 12's defects, each a
regression test): nothing a client sends is a 500, framing errors are 400 and close, conditional
requests on absent objects are 404, and the reasons say what the rule is.

The app is real on a real socket (127.0.0.1), the data plane the in-memory fake.
"""

from __future__ import annotations

import json
import re

import pytest
import trio

from tests.support.gateway_fakes import b3, serve

DEADLINE = 20


async def raw_exchange(port: int, data: bytes, *, read_for: float = 2.0) -> bytes:
    """Send raw bytes, then read everything the server sends until it closes (or ``read_for``)."""
    got = b""
    with trio.socket.socket() as s:
        await s.connect(("127.0.0.1", port))
        await s.send(data)
        with trio.move_on_after(read_for):
            while chunk := await s.recv(65536):
                got += chunk
    return got


def statuses(answer: bytes) -> list[int]:
    """The status of every response in ``answer`` (bodies may run into the next status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3})", answer)]


# --- 1: what a client sent is never a 500 ------------------------------------------------------


async def test_a_range_number_past_the_int_digit_limit_is_not_a_500() -> None:
    data = b"0123456789" * 100
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            await gw.put(data)
            huge_last = await gw.req("GET", f"/o/{b3(data)}", range="bytes=0-" + "9" * 5000)
            huge_first = await gw.req("GET", f"/o/{b3(data)}", range="bytes=" + "9" * 5000 + "-")
            huge_suffix = await gw.req("GET", f"/o/{b3(data)}", range="bytes=-" + "9" * 5000)
    assert (huge_last.status, huge_last.body) == (206, data)  # clamped to the object's end
    assert huge_first.status == 416
    assert (huge_suffix.status, huge_suffix.body) == (206, data)  # "the last N": all of it
    assert gw.metrics.http_requests.get(route="/o/{id}", method="GET", status="500") == 0


@pytest.mark.parametrize(
    "version", ["18446744073709551616", "9" * 3900, "null", "1.5", "-1", "true"]
)
async def test_bad_expect_versions_are_422(version: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            put = await gw.put(b"x")
            doc = f'{{"id": "{put.json()["id"]}", "expect_version": {version}}}'.encode()
            resp = await gw.req("PUT", "/names/x", doc)
    assert (resp.status, resp.json()["error"]) == (422, "schema_invalid"), resp.body
    counted = gw.metrics.http_requests.get(route="/names/{name}", method="PUT", status="422")
    assert counted == 1


async def test_a_deeply_nested_json_body_is_400_bad_json() -> None:
    nested = b"[" * 2000 + b"]" * 2000
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            resp = await gw.req("PUT", "/names/x", b'{"id": ' + nested + b"}")
    assert (resp.status, resp.json()["error"]) == (400, "bad_json"), resp.body
    assert gw.metrics.http_requests.get(route="/names/{name}", method="PUT", status="400") == 1


# --- 2: a conditional GET never invents an object ----------------------------------------------


@pytest.mark.parametrize("tag", ["*", "own"])
async def test_if_none_match_on_an_absent_object_is_404(tag: str) -> None:
    absent, stored = b3(b"never stored"), b3(b"stored")

    def header(obj_id: str) -> str:
        return "*" if tag == "*" else f'"{obj_id}"'

    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            missing = await gw.req("GET", f"/o/{absent}", if_none_match=header(absent))
            await gw.put(b"stored")
            present = await gw.req("GET", f"/o/{stored}", if_none_match=header(stored))
    assert (missing.status, missing.json()["error"]) == (404, "not_found")
    assert present.status == 304


# --- 3, 4: framing ---------------------------------------------------------------------------


async def test_content_length_with_chunked_is_400_and_closes() -> None:
    smuggle = (
        b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /o/" + b3(b"hello").encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            answer = await raw_exchange(gw.port, smuggle)
    assert statuses(answer) == [400], answer  # the pipelined second request is not answered
    assert b"bad_request" in answer
    assert gw.backend.objects == {}


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n"],
)
async def test_chunk_framing_errors_are_400_not_408(chunks: bytes) -> None:
    head = b"PUT /o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            answer = await raw_exchange(gw.port, head + chunks)
    assert statuses(answer) == [400], answer
    assert b"bad_request" in answer


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/9.9"])
async def test_unsupported_http_versions_are_505(version: bytes) -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            answer = await raw_exchange(
                gw.port, b"GET /o HTTP/1.1\r\n".replace(b"HTTP/1.1", version) + b"Host: x\r\n\r\n"
            )
    assert statuses(answer) == [505], answer


# --- 7, 8: bodies and names ------------------------------------------------------------------


async def test_an_empty_put_is_400() -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            empty = await gw.put(b"")
            chunked_empty = await gw.req("PUT", "/o", iter([b""]))
    for resp in (empty, chunked_empty):
        assert (resp.status, resp.json()["error"]) == (400, "empty_body"), resp.body
    assert gw.backend.objects == {}


async def test_a_bad_name_answer_says_the_rule() -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            resp = await gw.req("GET", "/names/my%20file")
            long = await gw.req("GET", "/names/" + "a" * 300)
    assert (resp.status, resp.json()["error"]) == (422, "bad_name")
    detail = resp.json()["detail"]
    assert "A-Z a-z 0-9" in detail and "255" in detail, detail
    assert long.json()["error"] == "bad_name" and "255" in long.json()["detail"]


async def test_an_encoded_slash_in_a_name_is_refused_not_stored_as_a_path() -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            put = await gw.put(b"x")
            doc = json.dumps({"id": put.json()["id"]}).encode()
            encoded = await gw.req("PUT", "/names/a%2Fb", doc)
            plain = await gw.req("PUT", "/names/a/b", doc)
    assert (encoded.status, encoded.json()["error"]) == (422, "bad_name"), encoded.body
    assert "%2F" in encoded.json()["detail"]
    assert plain.status == 200
    assert list(gw.backend.names) == ["a/b"]


# --- what already holds and must keep holding ----------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /o HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /o HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /o HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /o HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(10_000))
        + b"\r\n",
        b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=[
        "garbage",
        "no-target",
        "extra-token",
        "bad-header",
        "100kb-header",
        "10k-headers",
        "cl-text",
        "cl-duplicate",
        "cl-negative",
    ],
)
async def test_malformed_heads_are_400_and_the_server_goes_on(head: bytes) -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            answer = await raw_exchange(gw.port, head)
            after = await gw.req("GET", "/o/" + b3(b"x"))
    assert statuses(answer)[:1] in ([400], [431]), answer[:200]
    assert after.status == 404  # still serving


async def test_a_body_longer_than_its_content_length_is_not_a_second_request() -> None:
    data = b"hello" + b"GET /o/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            answer = await raw_exchange(gw.port, head + data)
    codes = statuses(answer)
    assert codes[0] == 201 and all(c in (201, 400, 404) for c in codes), answer
    assert list(gw.backend.objects) == [b3(b"hello")]


async def test_pipelined_requests_are_answered_in_order_and_http_1_0_closes() -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            await gw.put(b"one")
            oid = b3(b"one").encode()
            pipelined = (
                b"".join(b"GET /o/" + oid + b" HTTP/1.1\r\nHost: x\r\n\r\n" for _ in range(3))
                + b"GET /o/"
                + b3(b"two").encode()
                + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answer = await raw_exchange(gw.port, pipelined)
            old = await raw_exchange(gw.port, b"GET /o/" + oid + b" HTTP/1.0\r\n\r\n")
    assert statuses(answer) == [200, 200, 200, 404]
    assert statuses(old) == [200] and old.endswith(b"one")


@pytest.mark.parametrize(
    "path",
    [
        "/o/../../etc/passwd",
        "/o/b3:" + "0" * 63 + "/",
        "/o/%2e%2e%2fetc",
        "/names/../x",
        "/names/a/./b",
        "/names//a",
        "/names/a/",
        "/o/B3:" + "A" * 64,
    ],
)
async def test_traversal_in_ids_and_names_is_refused(path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            resp = await gw.req("GET", path)
    assert resp.status in (400, 404, 422), (path, resp.status)
    assert resp.json()["error"] in ("bad_id", "bad_name", "not_found")


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        ("bytes=0-0", 206, b"0"),
        ("bytes=-1", 206, b"9"),
        ("bytes=9-", 206, b"9"),
        ("bytes=5-2", 200, b"0123456789"),  # invalid: ignored
        ("bytes=10-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,3-4", 200, b"0123456789"),  # several ranges: the whole object
        ("items=0-1", 200, b"0123456789"),
        ("bytes=0-99999999999999999999999", 206, b"0123456789"),
    ],
)
async def test_range_edges(header: str, status: int, body: bytes | None) -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True) as gw:
            await gw.put(b"0123456789")
            resp = await gw.req("GET", f"/o/{b3(b'0123456789')}", range=header)
    assert resp.status == status, (header, resp.status)
    if body is not None:
        assert resp.body == body
    else:
        assert resp.headers["content-range"] == "bytes */10"


@pytest.mark.slow
async def test_slowloris_does_not_starve_the_server() -> None:
    """200 connections that send a head one byte at a time: health and a PUT/GET round trip
    keep working, and the server cuts the slow ones at its timeout."""
    with trio.fail_after(60):
        async with serve(h11=True, timeout=2.0) as gw:
            socks = []
            for _ in range(200):
                s = trio.socket.socket()
                await s.connect(("127.0.0.1", gw.port))
                await s.send(b"GET /o/")
                socks.append(s)
            try:
                started = trio.current_time()
                put = await gw.put(b"still here")
                got = await gw.req("GET", f"/o/{b3(b'still here')}")
                took = trio.current_time() - started
                assert (put.status, got.status, got.body) == (201, 200, b"still here")
                assert took < 2.0, took  # bounded by the timeout, not by the 200 laggards
                # The laggards are cut once the head timeout passes (answer 408, then close).
                closed = 0
                with trio.move_on_after(10):
                    for s in socks:
                        while await s.recv(4096):
                            pass
                        closed += 1
                assert closed == len(socks)
            finally:
                for s in socks:
                    s.close()


# --- 13: overload: shed writes first, bound every admitted request -----------------------------


async def test_writes_are_shed_first_and_reads_stay_open() -> None:
    with trio.fail_after(DEADLINE):
        async with serve(h11=True, max_writes=1) as gw:
            await gw.put(b"readable")
            with trio.socket.socket() as holder:  # a PUT that holds the one write slot
                await holder.connect(("127.0.0.1", gw.port))
                await holder.send(b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
                while gw.app.writes.inflight == 0:
                    await trio.sleep(0.01)
                shed = await gw.put(b"second write")
                read = await gw.req("GET", f"/o/{b3(b'readable')}")
    assert (shed.status, shed.json()["error"]) == (429, "busy") and shed.headers["retry-after"]
    assert read.status == 200


async def test_a_trickling_upload_is_cut_at_its_overall_deadline() -> None:
    """Each piece comes well within the idle timeout, but far below min_rate: the overall
    deadline (timeout + bytes / min_rate) ends it; it is answered 408 and nothing is kept."""
    with trio.fail_after(DEADLINE):
        async with serve(h11=True, timeout=1.0, min_rate=1000.0) as gw:
            with trio.socket.socket() as s:
                await s.connect(("127.0.0.1", gw.port))
                await s.send(b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
                answer, sent = b"", 0
                with trio.move_on_after(8):
                    while sent < 1000 and not answer:  # 10 B per 0.3 s: 33 B/s, under 1000 B/s
                        await s.send(b"x" * 10)
                        sent += 10
                        with trio.move_on_after(0.3):
                            answer += await s.recv(65536)
    assert statuses(answer) == [408], answer
    assert sent < 1000  # cut long before the whole body could arrive at that pace
    assert gw.backend.objects == {}


def test_shedding_is_reported_when_sustained_and_cleared_after() -> None:
    from services.gateway.limits import ShedWatch

    now = [100.0]
    changes: list[bool] = []
    watch = ShedWatch(changes.append, window=5, min_sheds=20, clock=lambda: now[0])
    for _ in range(19):
        watch.shed()
    assert changes == []  # not enough yet
    watch.admitted()
    watch.shed()
    assert changes == [True] and watch.degraded
    now[0] += 6  # the window moved on: only admitted writes now
    for _ in range(10):
        watch.admitted()
    assert changes == [True, False] and not watch.degraded


def test_shedding_clears_by_itself_when_no_write_arrives() -> None:
    """A load balancer honouring /readyz sends no more writes to a degraded gateway: the shed
    window must clear on the clock alone, not only when the next write is noted."""
    from services.gateway.limits import ShedWatch

    now = [100.0]
    changes: list[bool] = []
    watch = ShedWatch(changes.append, window=5, min_sheds=20, clock=lambda: now[0])
    for _ in range(40):
        watch.shed()
    assert changes == [True]
    watch.tick()
    assert changes == [True]  # the pressure is still in the window
    now[0] += 6  # nothing arrived since
    watch.tick()
    assert changes == [True, False] and not watch.degraded
