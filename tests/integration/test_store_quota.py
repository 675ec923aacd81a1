"""A PUT whose ``Content-Length`` cannot fit the store is refused 507 before its body is read
(and before ``100 Continue``), and ``storage_bytes`` / ``storage_objects`` show the usage."""

from __future__ import annotations

import contextlib
import select
import socket
from pathlib import Path

import pytest
import trio

from tests.integration.test_gateway_node import gateway_node

pytestmark = pytest.mark.integration


def _headers_only(url: str, token: str, length: int, expect: bool) -> bytes:
    """Send a PUT's head and never its body; what the gateway answers (or b"" at timeout)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"PUT /o HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {length}\r\n" + ("Expect: 100-continue\r\n" if expect else "") + "\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or b'"detail"' not in answer:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except TimeoutError:
            pass
    return answer


async def test_an_upload_that_cannot_fit_is_refused_before_its_body(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with gateway_node(
            tmp_path, "macronode", body_cap=1000000, storage_max_bytes=300000
        ) as (node, gw):
            first = await gw.req("PUT", "/o", b"a" * 200000)
            assert first.status == 201
            assert await node.metric("storage_bytes") == 200000
            assert await node.metric("storage_objects") == 1
            assert await node.metric("storage_quota_bytes") == 300000
            status = await node.ronctl("status")
            assert status.returncode == 0, status.stderr
            last = status.stdout.decode().splitlines()[-1]
            assert last == "store 195.3 KiB (66.7% of 293.0 KiB), 1 objects"
            for expect in (True, False):
                answer = await trio.to_thread.run_sync(
                    _headers_only, node.ready_line["gateway"], gw.token, 200000, expect
                )
                assert answer.startswith(b"HTTP/1.1 507 "), answer[:200]
                assert b"100 Continue" not in answer
                assert b'"insufficient_storage"' in answer and b"this object is 200000" in answer
            fits = await gw.req("PUT", "/o", b"b" * 90000)  # what fits still goes in
            assert fits.status == 201
            assert await node.metric("storage_objects") == 2


def _chunked_until_answered(
    url: str, token: str, total: int, chunk: int = 65536
) -> tuple[int, bytes]:
    """Stream a chunked PUT of ``total`` bytes, stopping as soon as the gateway answers;
    (body bytes sent, the answer)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"PUT /o HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    sent = 0
    piece = b"%x\r\n%s\r\n" % (chunk, b"z" * chunk)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")  # the whole body went out: end it
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b'"detail"' not in answer:
                got = sock.recv(65536)
                if not got:
                    break
                answer += got
    return sent, answer


async def test_a_chunked_upload_that_outgrows_the_store_is_stopped_early(tmp_path: Path) -> None:
    """No Content-Length to check up front: the gateway refuses 507 once the bytes received
    pass what the store can take, instead of reading the whole upload first."""
    total = 64 << 20
    with trio.fail_after(90):
        async with gateway_node(tmp_path, "micronode", storage_max_bytes=300000) as (node, gw):
            sent, answer = await trio.to_thread.run_sync(
                _chunked_until_answered, node.ready_line["gateway"], gw.token, total
            )
            assert answer.startswith(b"HTTP/1.1 507 "), answer[:200]
            assert b"insufficient_storage" in answer
            assert sent < total // 4, f"{sent} of {total} bytes went out before the answer"
            assert await node.metric("storage_objects") == 0
