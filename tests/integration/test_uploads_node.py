"""Uploads and verbs as users already use them, on real nodes (issue 30):

- ``curl -T`` of a 50 MiB file (Content-Length) is stored under the id ``ronctl put`` gives;
- a Content-Length over ``max_object_size`` is 413, and one over the quota is 507, both from the
  headers alone: the client (``Expect: 100-continue``) never has to send the body;
- ``ronctl put DIR --name PREFIX/``, ``ronctl get NAME``, ``ronctl restart|stop|start all``;
- hostile names (``..``, ``//``, NUL, 4 KiB, non-UTF-8 escapes) through ``/n/`` and ``ronctl get``
  are a 404 or a one-line refusal with a reason, never a 500 or a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

import pytest
import trio

from tests.integration.test_gateway_node import profile_with
from tests.support.gateway_fakes import b3
from tests.support.node_harness import REPO, RunningNode, http_request, start_node
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration
MIB = 1 << 20


def _host_port(node: RunningNode) -> tuple[str, int]:
    host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _headers_only(host: str, port: int, head: bytes) -> bytes:
    """Send a request head announcing a body, send no body, and read the answer's head: what
    a client waiting on ``100 Continue`` sees."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


async def test_curl_uploads_with_content_length_and_the_cli_verbs(tmp_path: Path) -> None:
    curl = need_tool("curl", "curl")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 * MIB))
    with trio.fail_after(240):
        async with start_node(tmp_path) as node:
            token = await node.mint(ops=["put", "name"], ttl=600)
            gateway = node.ready_line["gateway"]
            sent = await trio.run_process(
                [curl, "-sS", "-T", str(big), "-H", f"Authorization: Bearer {token}",
                 "-w", "\n%{http_code}", f"{gateway}/o"],
                capture_stdout=True, check=False,
            )  # fmt: skip
            body, _, status = sent.stdout.decode().rpartition("\n")
            assert status == "201", sent.stdout[-500:]
            stored = json.loads(body)
            assert stored["size"] == 50 * MIB
            put = await node.ronctl("put", str(big), "--json")
            assert put.returncode == 0, put.stderr
            assert json.loads(put.stdout)["id"] == stored["id"]  # the same object, 200 this time

            # a directory, named; then a name fetched back by the CLI
            site = tmp_path / "site"
            (site / "img").mkdir(parents=True)
            (site / "index.html").write_text("<!doctype html><title>t</title>")
            (site / "img" / "a.png").write_bytes(b"\x89PNG fake")
            (site / "notes.txt").write_text("plain")
            os.symlink("/etc/passwd", site / "leak")  # never followed
            tree = await node.ronctl("put", str(site), "--name", "web/", "--json")
            assert tree.returncode == 0, tree.stderr
            rows = {r["name"]: r for r in json.loads(tree.stdout)["files"]}
            assert set(rows) == {"web/index.html", "web/img/a.png", "web/notes.txt"}
            assert rows["web/img/a.png"]["type"] == "image/png"
            got = await node.ronctl("get", "web/notes.txt")
            assert got.returncode == 0 and got.stdout == b"plain"
            host, port = _host_port(node)
            page = await trio.to_thread.run_sync(http_request, host, port, "GET", "/n/web/")
            assert page.status == 200 and page.headers["content-type"] == "text/html"
            table = await node.ronctl("put", str(site), "--name", "web/")
            assert table.returncode == 0 and b"web/img/a.png" in table.stdout
            bad_dir = tmp_path / "bad"
            bad_dir.mkdir()
            (bad_dir / "a b.txt").write_text("x")
            refused = await node.ronctl("put", str(bad_dir), "--name", "x/")
            assert refused.returncode == 1 and b"cannot be named" in refused.stderr
            assert b"Traceback" not in refused.stderr

            # restart all: every service comes back as a new process, in start order
            before = {s["name"]: s["pid"] for s in (await node.get("/version")).json()["services"]}
            profile = tomllib.loads((REPO / "profiles" / "micronode.toml").read_text())
            start_order = [service["name"] for service in profile["services"]]
            assert sorted(start_order) == sorted(before)
            again = await node.ronctl("restart", "all", "--json")
            assert again.returncode == 0, again.stderr
            report = json.loads(again.stdout)
            assert [r["service"] for r in report["services"]] == start_order
            for row in report["services"]:
                assert row["state"] == "ready" and row["pid"] != before[row["service"]]
            stopped = await node.ronctl("stop", "all", "--json")
            assert stopped.returncode == 0, stopped.stderr
            order = [r["service"] for r in json.loads(stopped.stdout)["services"]]
            assert order == list(reversed(start_order))
            started = await node.ronctl("start", "all", "--json")
            assert started.returncode == 0, started.stderr
            states = {r["service"]: r["state"] for r in json.loads(started.stdout)["services"]}
            assert states == {name: "ready" for name in before}


async def test_too_large_and_over_quota_are_refused_before_the_body(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "macronode", max_object_size=MIB, storage_max_bytes=3 * MIB)
    args = ["--data-dir", str(tmp_path / "data")]
    with trio.fail_after(90):
        async with start_node(tmp_path, str(profile), extra_args=args) as node:
            token = await node.mint(ops=["put"], ttl=600)
            host, port = _host_port(node)

            def head(length: int) -> bytes:
                return (
                    f"PUT /o HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
                ).encode()

            too_large = await trio.to_thread.run_sync(_headers_only, host, port, head(MIB + 1))
            assert too_large.startswith(b"HTTP/1.1 413"), too_large
            # three objects of 1 MiB fill the 3 MiB quota; the fourth is refused before its body
            auth = {"Authorization": f"Bearer {token}"}
            for i in range(3):
                data = bytes([i]) * MIB
                put = await trio.to_thread.run_sync(
                    http_request, host, port, "PUT", "/o", data, auth
                )
                assert put.status == 201 and put.json()["id"] == b3(data), put.body
            full = await trio.to_thread.run_sync(_headers_only, host, port, head(MIB))
            assert full.startswith(b"HTTP/1.1 507"), full
            assert b"100 Continue" not in full


async def test_hostile_names_are_refused_with_a_reason(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            host, port = _host_port(node)
            for path in ("/n/..", "/n/a//b", "/n/a%00b", "/n/" + "n" * 4096, "/n/%ff%fe/x"):
                resp = await trio.to_thread.run_sync(http_request, host, port, "GET", path)
                assert resp.status == 404 and resp.json()["error"] == "no_name", path
            for name in ("..", "a//b", "a%00b", "n" * 4096, "caf\udce9"):
                got = await node.ronctl("get", name)
                assert got.returncode == 1, name
                assert b"Traceback" not in got.stderr and got.stderr.count(b"\n") == 1, got.stderr
