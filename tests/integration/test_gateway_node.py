"""svc-gateway in a real node: every route and error over HTTP, integrity, and kill -9 drills.

Real processes (``ronctl run``), real sockets on 127.0.0.1, the real store on disk (macronode
with ``--data-dir``) or tmpfs (micronode). Profiles are the shipped ones, with a few settings
made smaller so limits are reachable in a test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import blake3
import pytest
import trio

from ipc import caps
from tests.support.node_harness import (
    Response,
    RunningNode,
    WatchedDirs,
    http_request,
    poll_until,
    start_node,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

GATEWAY = "svc-gateway"
STORAGE = "svc-storage"
INDEX = "svc-index"


def b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def profile_with(tmp_path: Path, profile: str, **gateway: Any) -> Path:
    """The shipped profile with svc-gateway's settings (and svc-storage's quota) overridden."""
    text = (REPO / "profiles" / f"{profile}.toml").read_text()
    head, sep, tail = text.partition('name = "svc-gateway"')
    assert sep, "the profile runs no svc-gateway"
    storage_bytes = gateway.pop("storage_max_bytes", None)
    for key, value in gateway.items():
        tail, n = re.subn(rf"(?m)^{key} = \S+", f"{key} = {value}", tail)
        assert n == 1, key
    if storage_bytes is not None:  # svc-storage's own max_bytes (svc-mailbox has one too)
        before, name, rest = head.partition('name = "svc-storage"')
        rest, n = re.subn(r"(?m)^max_bytes = \S+", f"max_bytes = {storage_bytes}", rest, count=1)
        assert name and n == 1
        head = before + name + rest
    path = tmp_path / f"{profile}-test.toml"
    path.write_text(head + sep + tail)
    return path


class Gateway:
    """The gateway as a client that holds a write token (sent with every PUT)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.token = token

    def _call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Response:
        if method == "PUT" and self.token and "authorization" not in headers:
            headers = {**headers, "authorization": f"Bearer {self.token}"}
        return http_request(self.host, self.port, method, path, body, headers, timeout=30)

    async def req(self, method: str, path: str, body: Any = None, **headers: str) -> Response:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return await trio.to_thread.run_sync(self._call, method, path, body, hdrs)

    async def retrying(
        self, method: str, path: str, body: Any = None, timeout: float = 30
    ) -> Response:
        """What a well-behaved client does: retry 503 / 429 / a reset or refused connection."""
        with trio.fail_after(timeout):
            while True:
                try:
                    resp = await self.req(method, path, body)
                except (ConnectionError, http.client.HTTPException, TimeoutError):
                    # refused, reset, or cut mid-response (IncompleteRead) by a killed gateway
                    await trio.sleep(0.05)
                    continue
                if resp.status not in (429, 503):
                    return resp
                await trio.sleep(0.05)


@asynccontextmanager
async def gateway_node(
    tmp_path: Path, profile: str, **settings: Any
) -> AsyncIterator[tuple[RunningNode, Gateway]]:
    args = ["--gateway-addr", "127.0.0.1:0"]
    if profile == "macronode":
        args += ["--data-dir", str(tmp_path / "data")]
    path = profile_with(tmp_path, profile, **settings)
    async with start_node(tmp_path, str(path), extra_args=args) as node:
        token = await node.mint(ops=["put", "name"], ttl=3600)
        yield node, Gateway(node.ready_line["gateway"], token)


async def test_every_route_and_error_through_a_macronode(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with gateway_node(
            tmp_path,
            "macronode",
            timeout=1.0,
            body_cap=100000,
            max_object_size=300000,
            storage_max_bytes=1000000,
        ) as (node, gw):
            data = os.urandom(150000)  # chunked: over body_cap, under max_object_size
            oid = b3(data)
            first = await gw.req("PUT", "/o", iter([data[:70000], data[70000:]]))
            assert first.status == 201 and first.json() == {"id": oid, "size": len(data)}
            again = await gw.req("PUT", "/o", iter([data]))
            assert again.status == 200 and again.json()["id"] == oid
            small = await gw.req("PUT", "/o", b"small")
            assert small.status == 201 and small.json()["id"] == b3(b"small")

            got = await gw.req("GET", f"/o/{oid}")
            assert got.status == 200 and got.body == data
            assert got.headers["etag"] == f'"{oid}"'
            assert "immutable" in got.headers["cache-control"]
            head = await gw.req("HEAD", f"/o/{oid}")
            assert head.status == 200 and head.headers["content-length"] == str(len(data))
            part = await gw.req("GET", f"/o/{oid}", Range="bytes=100000-100009")
            assert part.status == 206 and part.body == data[100000:100010]
            beyond = await gw.req("GET", f"/o/{oid}", Range="bytes=999999-")
            assert beyond.status == 416 and beyond.reason() == "range_not_satisfiable"
            assert beyond.headers["content-range"] == f"bytes */{len(data)}"
            cached = await gw.req("GET", f"/o/{oid}", If_None_Match=f'"{oid}"')
            assert cached.status == 304

            assert (await gw.req("GET", "/o/b3:xyz")).reason() == "bad_id"
            assert (await gw.req("GET", "/o/b3:" + "0" * 64)).reason() == "not_found"
            assert (await gw.req("POST", "/o", b"")).reason() == "method_not_allowed"
            # Content-Length over body_cap streams like chunked (body_cap is for JSON bodies)
            over_cap = await gw.req("PUT", "/o", b"x" * 100001)
            assert over_cap.status == 201 and over_cap.json()["id"] == b3(b"x" * 100001)
            too_long = await gw.req("PUT", "/o", b"y" * 300001)
            assert too_long.status == 413 and too_long.reason() == "object_too_large"
            too_big = await gw.req("PUT", "/o", iter([b"y" * 200000, b"y" * 200000]))
            assert too_big.reason() == "object_too_large"

            name = await gw.req("PUT", "/names/site/home", json.dumps({"id": oid}).encode())
            assert name.status == 200 and name.json() == {
                "name": "site/home",
                "id": oid,
                "version": 1,
            }
            stale = json.dumps({"id": oid, "expect_version": 0}).encode()
            assert (await gw.req("PUT", "/names/site/home", stale)).reason() == "version_conflict"
            assert (await gw.req("GET", "/names/site/home")).json()["version"] == 1
            assert (await gw.req("GET", "/names/nobody")).reason() == "not_found"
            assert (await gw.req("PUT", "/names/x", b"{")).reason() == "bad_json"
            assert (await gw.req("PUT", "/names/x", b'{"id": 1}')).reason() == "schema_invalid"
            assert (await gw.req("GET", "/names/a/../b")).reason() == "bad_name"

            # The store's quota: 507, nothing evicted.
            full = [await gw.req("PUT", "/o", os.urandom(99000)) for _ in range(12)]
            assert full[-1].status == 507 and full[-1].reason() == "insufficient_storage"
            assert (await gw.req("GET", f"/o/{oid}")).body == data

            # Storage hung: writes answer 503 + Retry-After at the deadline; reads keep working.
            storage = await node.service(STORAGE)
            os.kill(storage["pid"], signal.SIGSTOP)
            try:
                down = await gw.req("PUT", "/o", b"while storage hangs")
                assert down.status == 503 and down.reason() == "unavailable"
                assert int(down.headers["retry-after"]) >= 1
                assert (await gw.req("GET", f"/o/{oid}")).body == data
            finally:  # it may already be replaced (heartbeat timeout): then nothing to resume
                with contextlib.suppress(ProcessLookupError):
                    os.kill(storage["pid"], signal.SIGCONT)

            assert (
                await node.metric(
                    "http_requests_total", route="/o/{id}", method="GET", status="200"
                )
                >= 3
            )
            assert await node.metric("request_latency_seconds_count", op="gateway_put_object") > 0
            assert await node.metric("rejected_total", reason="bad_id") == 1


async def test_rate_limit_and_inflight_cap_in_a_node(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "micronode", rate=1.0, burst=2) as (_node, gw):
            statuses = [(await gw.req("GET", "/names/x")).status for _ in range(4)]
            assert statuses[:2] == [404, 404] and 429 in statuses[2:]
            limited = await gw.req("GET", "/names/x")
            assert limited.reason() == "quota_exceeded" and "retry-after" in limited.headers


async def test_a_corrupted_object_is_never_served(tmp_path: Path) -> None:
    data = os.urandom(5000)
    oid = b3(data)
    with trio.fail_after(60):
        async with gateway_node(tmp_path, "macronode") as (node, gw):
            assert (await gw.req("PUT", "/o", data)).status == 201
            assert (await gw.req("GET", f"/o/{oid}")).body == data  # now held verified (hot)
            path = tmp_path / "data" / "objects" / oid[3:5] / oid[3:]
            before = path.stat()
            corrupted = bytearray(path.read_bytes())
            corrupted[1234] ^= 0xFF
            path.chmod(0o600)
            path.write_bytes(bytes(corrupted))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime still moves
            bad = await gw.req("GET", f"/o/{oid}")
            assert bad.status == 500 and bad.reason() == "integrity_failure"
            assert bytes(corrupted) not in bad.body
            await poll_until(
                lambda: node.metric("integrity_fail_total"), 10, "integrity_fail_total >= 1"
            )
            assert await node.metric("integrity_fail_total") == 1
            assert not path.exists()  # quarantined
            assert (await gw.req("GET", f"/o/{oid}")).reason() == "not_found"
            assert (await gw.req("PUT", "/o", data)).status == 201  # good bytes heal it
            assert (await gw.req("GET", f"/o/{oid}")).body == data


# --- kill -9 drills -------------------------------------------------------------------------------


@attrs.define
class Writers:
    gw: Gateway
    acked_objects: list[tuple[str, bytes]] = attrs.field(factory=list)
    acked_names: dict[str, tuple[str, int]] = attrs.field(factory=dict)
    stop: trio.Event = attrs.field(factory=trio.Event)

    async def objects(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            size = rng.choice([rng.randrange(1, 60000), rng.randrange(70000, 300000)])
            data = rng.randbytes(size)
            resp = await self.gw.retrying("PUT", "/o", data)
            assert resp.status in (200, 201), (resp.status, resp.body)
            assert resp.json()["id"] == b3(data)
            self.acked_objects.append((resp.json()["id"], data))

    async def names(self, writer: int) -> None:
        name = f"w{writer}"
        n = 0
        while not self.stop.is_set():
            n += 1
            obj_id = b3(f"{name}-{n}".encode())
            resp = await self.gw.retrying(
                "PUT", f"/names/{name}", json.dumps({"id": obj_id}).encode()
            )
            assert resp.status == 200, (resp.status, resp.body)
            self.acked_names[name] = (obj_id, resp.json()["version"])


@pytest.mark.parametrize("profile", ["micronode", "macronode"])
@pytest.mark.parametrize("victim", [STORAGE, GATEWAY, INDEX])
async def test_kill9_during_8_writers_loses_no_acknowledged_write(
    tmp_path: Path, profile: str, victim: str
) -> None:
    with trio.fail_after(120):
        async with gateway_node(tmp_path, profile, timeout=2.0) as (node, gw):
            writers = Writers(gw)

            def progress() -> int:
                return len(writers.acked_objects) + sum(v for _, v in writers.acked_names.values())

            async with trio.open_nursery() as nursery:
                for i in range(8):
                    if victim == INDEX:
                        nursery.start_soon(writers.names, i)
                    else:
                        nursery.start_soon(writers.objects, 1000 * i)
                await poll_until(lambda: progress() >= 40, 60, "40 acknowledged writes")
                old = await node.service(victim)
                os.kill(old["pid"], signal.SIGKILL)
                killed_at = progress()
                await node.wait_service(victim, state="ready", not_pid=old["pid"])
                await poll_until(lambda: progress() >= killed_at + 40, 60, "writes after restart")
                writers.stop.set()

            for obj_id, data in writers.acked_objects:
                got = await gw.retrying("GET", f"/o/{obj_id}")
                assert got.status == 200 and got.body == data, obj_id
            for name, (obj_id, version) in writers.acked_names.items():
                got = (await gw.retrying("GET", f"/names/{name}")).json()
                # Each writer owns its name: the last acknowledged update (or one attempt after it
                # that committed without its answer arriving) is what the index holds.
                assert got["version"] >= version
                if got["version"] == version:
                    assert got["id"] == obj_id
            assert (await node.service(victim))["restarts"] == 1


async def test_micronode_session_writes_nothing_outside_its_runtime_dir(tmp_path: Path) -> None:
    """A full PUT/GET/name session with HOME, TMPDIR, XDG dirs and the cwd pointed at empty
    dirs: afterwards they are still empty and the runtime dir (with the tmpfs store) is gone."""
    watched = WatchedDirs(tmp_path)
    env = watched.env
    data = os.urandom(3 * 65536 + 7)
    with trio.fail_after(60):
        async with start_node(
            tmp_path, env=env, cwd=watched.cwd, extra_args=["--gateway-addr", "127.0.0.1:0"]
        ) as node:
            # keys, a revocation, a rotation and audit records: all of it in the tmpfs dir too
            gw = Gateway(node.ready_line["gateway"], await node.mint(ttl=600))
            spare = caps.Token.decode(await node.mint(ttl=60)).id.hex()
            assert (await node.post_json("/token/revoke", {"id": spare})).status == 200
            assert (await node.post("/token/rotate")).status == 200
            oid = (await gw.req("PUT", "/o", iter([data]))).json()["id"]
            assert (await gw.req("PUT", "/o", b"small")).status == 201
            assert (await gw.req("GET", f"/o/{oid}")).body == data
            name = await gw.req("PUT", "/names/n", json.dumps({"id": oid}).encode())
            assert name.status == 200
            assert (await gw.req("GET", "/names/n")).json()["id"] == oid
            assert (node.runtime_dir / "data" / "objects").is_dir()  # the store is in there
            assert (node.runtime_dir / "data" / "keys" / "identity.key").is_file()  # keys too
            assert (node.runtime_dir / "data" / "audit" / "audit.log").is_file()
            node.proc.send_signal(signal.SIGTERM)
            assert await node.proc.wait() == 0
    assert watched.leftovers() == {}
    assert not node.runtime_dir.exists()
