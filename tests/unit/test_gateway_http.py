"""svc-gateway's HTTP layer over an in-memory backend, served by hypercorn on 127.0.0.1.

Real sockets and a real HTTP server (the same ``serve_on_socket`` the service uses); only the
data plane behind the ``Backend`` seam is faked, so each route, status, header and limit is
tested without storage or index processes (those are in test_gateway_node.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import trio

from services.gateway.app import CACHE_IMMUTABLE
from services.gateway.errors import REASONS, GatewayError
from services.gateway.limits import TokenBucket
from services.gateway.ranges import parse_range
from services.gateway.settings import GatewaySettings, parse_settings
from tests.support.gateway_fakes import b3, serve
from tests.support.node_harness import Response

SPECS = Path(__file__).resolve().parents[2] / "specs"


def error_of(resp: Response) -> str:
    body = resp.json()
    assert set(body) == {"error", "detail"}
    assert resp.headers["content-type"] == "application/json"
    assert REASONS[body["error"]] == resp.status
    return str(body["error"])


# --- objects ------------------------------------------------------------------------------------


async def test_put_is_idempotent_and_get_head_serve_the_verified_bytes() -> None:
    data = b"hello, object" * 100
    with trio.fail_after(20):
        async with serve() as gw:
            first = await gw.put(data)
            assert first.status == 201
            assert first.json() == {"id": b3(data), "size": len(data)}
            again = await gw.put(data)
            assert again.status == 200 and again.json() == first.json()
            got = await gw.req("GET", f"/o/{b3(data)}")
            assert got.status == 200 and got.body == data
            assert got.headers["etag"] == f'"{b3(data)}"'
            assert got.headers["cache-control"] == CACHE_IMMUTABLE.decode()
            assert got.headers["content-length"] == str(len(data))
            assert got.headers["accept-ranges"] == "bytes"
            head = await gw.req("HEAD", f"/o/{b3(data)}")
            assert head.status == 200 and head.body == b""
            assert head.headers["content-length"] == str(len(data))
            assert gw.metrics.http_requests.get(route="/o", method="PUT", status="201") == 1
            assert gw.metrics.http_requests.get(route="/o/{id}", method="GET", status="200") == 1
            assert gw.metrics.request_latency_seconds.get(op="gateway_get_object") == 1


async def test_ranges_304_and_416() -> None:
    data = bytes(range(256)) * 4
    oid = b3(data)
    with trio.fail_after(20):
        async with serve() as gw:
            await gw.put(data)
            part = await gw.req("GET", f"/o/{oid}", Range="bytes=10-19")
            assert part.status == 206 and part.body == data[10:20]
            assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
            tail = await gw.req("GET", f"/o/{oid}", Range="bytes=-5")
            assert tail.status == 206 and tail.body == data[-5:]
            rest = await gw.req("GET", f"/o/{oid}", Range="bytes=1000-")
            assert rest.status == 206 and rest.body == data[1000:]
            several = await gw.req("GET", f"/o/{oid}", Range="bytes=0-1,5-6")
            assert several.status == 200 and several.body == data  # unsupported: ignored
            beyond = await gw.req("GET", f"/o/{oid}", Range=f"bytes={len(data)}-")
            assert beyond.status == 416 and error_of(beyond) == "range_not_satisfiable"
            assert beyond.headers["content-range"] == f"bytes */{len(data)}"
            cached = await gw.req("GET", f"/o/{oid}", If_None_Match=f'W/"x", "{oid}"')
            assert cached.status == 304 and cached.body == b""
            assert cached.headers["etag"] == f'"{oid}"'


def test_parse_range_edges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    assert parse_range("bytes=-100", 10) == (0, 10)
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=5-2", 10) is None
    with pytest.raises(GatewayError):
        parse_range("bytes=-0", 10)
    with pytest.raises(GatewayError):
        parse_range("bytes=0-", 0)


async def test_large_objects_are_streamed_in_chunks_both_ways() -> None:
    chunk = 65536
    data = bytes(range(256)) * (5 * chunk // 256) + b"tail"
    with trio.fail_after(30):
        async with serve(body_cap=chunk) as gw:
            # Over the single-shot cap, but chunked: streamed into an upload piece by piece.
            pieces = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
            put = await gw.req("PUT", "/o", iter(pieces))
            assert put.status == 201 and put.json()["id"] == b3(data)
            assert 0 < gw.backend.largest_write <= 2 * chunk  # the small-body buffer + a piece
            got = await gw.req("GET", f"/o/{b3(data)}")
            assert got.body == data
            assert gw.backend.reads and max(gw.backend.reads) <= chunk


async def test_body_caps_answer_413_without_reading_the_excess() -> None:
    with trio.fail_after(20):
        async with serve(body_cap=1000, max_object_size=500_000, chunk=1024) as gw:
            # Content-Length over max_object_size: answered from the headers alone.
            answer = await gw.raw(
                b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 413"), answer
            # body_cap bounds only bodies read whole: an object with Content-Length streams
            # like a chunked one, up to max_object_size (the bug: 413 past body_cap)
            data = os.urandom(400_000)
            over_cap = await gw.put(data)
            assert over_cap.status == 201 and over_cap.json()["id"] == b3(data)
            assert gw.backend.objects[b3(data)] == data
            assert gw.backend.largest_write < len(data)  # streamed, never held whole
            over = await gw.put(b"x" * 500_001)
            assert over.status == 413 and error_of(over) == "object_too_large"
            streamed = await gw.req("PUT", "/o", iter([b"y" * 300_000, b"y" * 300_000]))
            assert streamed.status == 413 and error_of(streamed) == "object_too_large"
            assert gw.metrics.rejected.get(reason="object_too_large") == 3
            name_body = await gw.req("PUT", "/names/site", b"{" + b" " * 1000 + b"}")
            assert name_body.status == 413 and error_of(name_body) == "body_too_large"


async def test_bad_ids_unknown_objects_routes_and_methods() -> None:
    with trio.fail_after(20):
        async with serve() as gw:
            for bad in ("b3:abc", "b3:" + "A" * 64, "sha256:" + "a" * 64):
                resp = await gw.req("GET", f"/o/{bad}")
                assert resp.status == 400 and error_of(resp) == "bad_id"
            missing = await gw.req("GET", "/o/b3:" + "0" * 64)
            assert missing.status == 404 and error_of(missing) == "not_found"
            nowhere = await gw.req("GET", "/nowhere")
            assert nowhere.status == 404 and error_of(nowhere) == "not_found"
            assert gw.metrics.http_requests.get(route="unmatched", method="GET", status="404") == 1
            wrong = await gw.req("DELETE", "/o/b3:" + "0" * 64)
            assert wrong.status == 405 and error_of(wrong) == "method_not_allowed"
            assert wrong.headers["allow"] == "GET, HEAD"
            post = await gw.req("POST", "/o", b"x")
            assert post.status == 405 and post.headers["allow"] == "PUT"


async def test_integrity_failure_is_never_served_counted_and_quarantined() -> None:
    data = b"precious"
    with trio.fail_after(20):
        async with serve() as gw:
            await gw.put(data)
            gw.backend.corrupt.add(b3(data))
            resp = await gw.req("GET", f"/o/{b3(data)}")
            assert resp.status == 500 and error_of(resp) == "integrity_failure"
            assert data not in resp.body
            assert gw.backend.quarantined == [b3(data)]
            assert gw.metrics.integrity_fail.value == 0  # svc-storage counts what it quarantines
            gw.backend.writes_down = True  # storage unreachable: the gateway counts it itself
            again = await gw.req("GET", f"/o/{b3(data)}")
            assert again.status == 500 and error_of(again) == "integrity_failure"
            assert gw.metrics.integrity_fail.value == 1


# --- names --------------------------------------------------------------------------------------


async def test_names_versions_conflicts_and_bad_bodies() -> None:
    a, b = b3(b"a"), b3(b"b")
    with trio.fail_after(20):
        async with serve() as gw:
            missing = await gw.req("GET", "/names/site")
            assert missing.status == 404 and error_of(missing) == "not_found"
            put = await gw.req("PUT", "/names/site", json.dumps({"id": a}).encode())
            assert put.status == 200 and put.json() == {"name": "site", "id": a, "version": 1}
            body = json.dumps({"id": b, "expect_version": 1}).encode()
            put2 = await gw.req("PUT", "/names/site", body)
            assert put2.json()["version"] == 2
            stale = await gw.req("PUT", "/names/site", body)
            assert stale.status == 409 and error_of(stale) == "version_conflict"
            got = await gw.req("GET", "/names/site")
            assert got.json() == {"name": "site", "id": b, "version": 2}
            cases = [
                (b"{not json", 400, "bad_json"),
                (b"[1, 2]", 422, "schema_invalid"),
                (json.dumps({"id": a, "extra": 1}).encode(), 422, "schema_invalid"),
                (json.dumps({"id": a, "expect_version": -1}).encode(), 422, "schema_invalid"),
                (json.dumps({"id": "b3:nope"}).encode(), 400, "bad_id"),
                (b"x" * 5000, 413, "body_too_large"),
            ]
            for raw, status, reason in cases:
                resp = await gw.req("PUT", "/names/site", raw)
                assert (resp.status, error_of(resp)) == (status, reason), raw[:40]
            for bad_name in ("n" * 300, "a%20b", "a/../b", "a//b"):
                bad = await gw.req("GET", "/names/" + bad_name)
                assert bad.status == 422 and error_of(bad) == "bad_name", bad_name
            nested = await gw.req("PUT", "/names/site/v1", json.dumps({"id": a}).encode())
            assert nested.status == 200 and nested.json()["name"] == "site/v1"


# --- pressure -----------------------------------------------------------------------------------


async def test_writes_while_the_data_plane_is_down_get_503_with_retry_after() -> None:
    data = b"kept"
    with trio.fail_after(20):
        async with serve() as gw:
            await gw.put(data)
            gw.backend.writes_down = True
            resp = await gw.put(b"new")
            assert resp.status == 503 and error_of(resp) == "unavailable"
            assert int(resp.headers["retry-after"]) >= 1
            name = await gw.req("PUT", "/names/x", json.dumps({"id": b3(data)}).encode())
            assert name.status == 503 and "retry-after" in name.headers
            read = await gw.req("GET", f"/o/{b3(data)}")  # reads keep being served
            assert read.status == 200 and read.body == data


async def test_inflight_cap_answers_429_at_once() -> None:
    oid = "b3:" + "1" * 64
    with trio.fail_after(20):
        async with serve(max_inflight=2) as gw, trio.open_nursery() as nursery:
            gw.backend.gate = trio.Event()
            for _ in range(2):
                nursery.start_soon(gw.req, "GET", f"/o/{oid}")

            async def two_in() -> bool:
                return gw.backend.entered == 2

            while not await two_in():
                await trio.sleep(0.01)
            third = await gw.req("GET", f"/o/{oid}")
            assert third.status == 429 and error_of(third) == "busy"
            assert int(third.headers["retry-after"]) >= 1
            gw.backend.gate.set()


async def test_rate_limit_answers_429_with_retry_after() -> None:
    with trio.fail_after(20):
        async with serve(rate=0.5, burst=2) as gw:
            statuses = [(await gw.req("GET", "/names/x")).status for _ in range(3)]
            assert statuses[:2] == [404, 404]
            limited = await gw.req("GET", "/names/x")
            assert limited.status == 429 and error_of(limited) == "quota_exceeded"
            assert int(limited.headers["retry-after"]) >= 1


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=1, clock=lambda: now[0])
    bucket.take()
    with pytest.raises(GatewayError) as err:
        bucket.take()
    assert err.value.status == 429 and err.value.retry_after == 1
    now[0] += 0.1
    bucket.take()


async def test_a_hung_data_plane_answers_503_within_the_timeout() -> None:
    oid = "b3:" + "2" * 64
    with trio.fail_after(20):
        async with serve(timeout=0.3) as gw:
            gw.backend.gate = trio.Event()  # never set: the backend hangs
            resp = await gw.req("GET", f"/o/{oid}")
            assert resp.status == 503 and error_of(resp) == "unavailable"
            assert "retry-after" in resp.headers


# --- settings and the written contract ----------------------------------------------------------


def test_settings_are_strict() -> None:
    assert parse_settings({}) == GatewaySettings()
    assert parse_settings({"rate": 100, "burst": 50}).rate == 100.0
    for bad in ({"nope": 1}, {"timeout": 0}, {"max_inflight": "many"}, {"body_cap": 1.5}):
        with pytest.raises(ValueError, match="svc-gateway settings"):
            parse_settings(bad)


def test_reasons_match_the_spec_and_the_openapi_document() -> None:
    spec = json.loads((SPECS / "gateway_reasons.json").read_text())
    assert {r["reason"]: r["status"] for r in spec["reasons"]} == dict(REASONS)
    openapi = (SPECS / "gateway-openapi.yaml").read_text()
    for reason in REASONS:
        assert re.search(rf"\b{reason}\b", openapi), reason
    for path in ("/o:", "/o/{id}:", "/names/{name}:"):
        assert f"  {path}" in openapi


def _statuses(openapi: str) -> Iterable[str]:
    return re.findall(r"^\s+'(\d{3})':", openapi, flags=re.M)


def test_openapi_documents_every_error_status() -> None:
    openapi = (SPECS / "gateway-openapi.yaml").read_text()
    documented = set(_statuses(openapi))
    assert {str(s) for s in REASONS.values()} <= documented
    assert {"200", "201", "206", "304"} <= documented
