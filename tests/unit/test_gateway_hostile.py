"""Hostile input against the gateway on the node's own HTTP server (issue 12's defects, each a
regression test): nothing a client sends is a 500, framing errors are 400 and close, conditional
requests on absent objects are 404, and the reasons say what the rule is.

The app is real on a real socket (127.0.0.1), the data plane the in-memory fake.
"""

from __future__ import annotations

import json

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
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


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
