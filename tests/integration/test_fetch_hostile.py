"""Fetch by id against peers that lie, hang or stream junk (real nodes, real hostile peer
processes on 127.0.0.1: ``tests/support/hostile_peer.py``). DESIGN §8's 404/503 rule, the
store's quota before the first byte, a fetch that stops with its caller, bad peers banned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import blake3
import pytest
import trio

from ipc.manifest import object_id
from tests.integration.test_overlay_nodes import gateway_get, node, overlay_addr, put
from tests.support.node_harness import FAST_CONFIG, REPO, child_env, http_request, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.integration


@attrs.define
class Hostile:
    addr: str
    proc: trio.Process
    streamed: int = 0
    moved: trio.Event = attrs.field(factory=trio.Event)


@asynccontextmanager
async def hostile_peer(mode: str, *args: str) -> AsyncIterator[Hostile]:
    """A hostile peer process; ``streamed`` follows the bytes it sent."""
    cmd = [sys.executable, "-m", "tests.support.hostile_peer", mode, *args]
    proc = await trio.lowlevel.open_process(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), cwd=str(REPO)
    )
    assert proc.stdout is not None and proc.stdin is not None
    lines = _lines(proc.stdout)
    with trio.fail_after(20):
        peer = Hostile((await lines.__anext__()).strip(), proc)
    async with trio.open_nursery() as nursery:

        async def follow() -> None:
            async for line in lines:
                peer.streamed = int(line.split()[1])
                peer.moved.set()
                peer.moved = trio.Event()

        nursery.start_soon(follow)
        try:
            yield peer
        finally:
            await proc.stdin.aclose()
            with trio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buf = b""
    async for data in stream:
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode()


def id_of(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def asked_last_of_three(data_seed: int) -> bytes:
    """An object whose id puts the third listed peer last in svc-overlay's ring order."""
    n = data_seed
    while True:
        data = f"only on the third peer {n}".encode() * 100
        if int(id_of(data)[3:11], 16) % 3 == 0:
            return data
        n += 1000


async def test_a_fetch_asks_every_peer_before_404_and_a_hung_one_means_503(
    tmp_path: Path,
) -> None:
    with trio.fail_after(150):
        async with AsyncExitStack() as stack:
            enter = stack.enter_async_context
            b = await enter(hostile_peer("notfound"))
            c = await enter(hostile_peer("notfound"))
            m = await enter(node(tmp_path, "m"))
            objects = [asked_last_of_three(i) for i in range(3)]
            for data in objects:
                await put(m, data)
            n = await enter(node(tmp_path, "n", [b.addr, c.addr, await overlay_addr(m)]))
            for data in objects:  # fanout 2 used to stop after B and C: 404
                status, body = await trio.to_thread.run_sync(gateway_get, n, id_of(data))
                assert (status, body) == (200, data)
            missing = id_of(b"nobody has this")
            status, body = await trio.to_thread.run_sync(gateway_get, n, missing)
            assert status == 404 and json.loads(body)["error"] == "not_found"

            hung = await enter(hostile_peer("hang"))
            h = await enter(node(tmp_path, "h", [hung.addr, c.addr]))
            status, body = await trio.to_thread.run_sync(gateway_get, h, missing)
            assert status == 503, body  # a peer that never answered may have it: not a 404
            assert json.loads(body)["error"] == "unavailable"


async def _node_with_quota(tmp_path: Path, peers: list[str], max_bytes: int):
    config = FAST_CONFIG.replace("[overlay]\n", f"[overlay]\npeers = {json.dumps(peers)}\n")
    config += "\n" + services_toml("micronode", {"svc-storage": {"max_bytes": max_bytes}})
    return start_node(tmp_path, config=config)


async def test_a_declared_size_past_the_quota_is_507_before_a_byte_is_written(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        async with AsyncExitStack() as stack:
            junk = await stack.enter_async_context(hostile_peer("junk"))
            n = await stack.enter_async_context(
                await _node_with_quota(tmp_path, [junk.addr], 64 << 20)
            )
            status, body = await trio.to_thread.run_sync(gateway_get, n, id_of(b"announced"))
            assert status == 507, body
            assert json.loads(body)["error"] == "insufficient_storage"
            assert await n.metric("storage_bytes") == 0
            assert junk.streamed < 32 << 20  # cut at START: at most what the sockets buffered


async def test_a_fetch_stops_when_its_client_hangs_up(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            # 32 MiB/s: a 1 GiB announce takes 32 s, so what the node takes after the hang-up
            # measures how soon it noticed, not how fast loopback is on a loaded machine
            junk = await stack.enter_async_context(hostile_peer("junk", "--rate", str(32 << 20)))
            n = await stack.enter_async_context(
                await _node_with_quota(tmp_path, [junk.addr], 2 << 30)
            )
            host, port = n.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
            client = await trio.open_tcp_stream(host, int(port))
            await client.send_all(f"GET /o/{id_of(b'x')} HTTP/1.1\r\nHost: n\r\n\r\n".encode())
            with trio.fail_after(20):
                while junk.streamed < 8 << 20:  # the fetch is under way
                    await junk.moved.wait()
            await client.aclose()  # the caller is gone
            at_hangup = junk.streamed
            with trio.fail_after(15):  # the stream stops: no report of more bytes for 1.5 s
                while True:
                    with trio.move_on_after(1.5):
                        await junk.moved.wait()
                        continue
                    break
            # stopped within a few seconds of the hang-up, long before the announced gigabyte
            assert junk.streamed - at_hangup < 160 << 20, (at_hangup, junk.streamed)
            assert await n.metric("storage_bytes") == 0  # nothing unverified was kept


async def test_a_peer_whose_bytes_never_verify_is_banned_after_three(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            liar = await stack.enter_async_context(hostile_peer("wrong"))
            n = await stack.enter_async_context(node(tmp_path, "n", [liar.addr]))
            for i in range(3):
                status, _ = await trio.to_thread.run_sync(gateway_get, n, id_of(b"%d" % i))
                assert status == 503
            with trio.fail_after(10):  # its reports come every 0.2 s: all three are in
                while liar.streamed < 3 * 1000:
                    await liar.moved.wait()
            sent = liar.streamed
            status, body = await trio.to_thread.run_sync(gateway_get, n, id_of(b"fourth"))
            assert status == 503 and "banned" in json.loads(body)["detail"]
            with trio.move_on_after(1.0):  # five report periods: a stream would have shown
                await liar.moved.wait()
            assert liar.streamed == sent  # not asked again
            (peer,) = json.loads((await n.ronctl("peers", "--json")).stdout)["peers"]
            assert peer["state"] == "banned" and peer["banned_for"] > 500
            table = (await n.ronctl("peers")).stdout.decode()
            assert "banned" in table
            assert "peer_banned" in n.logs()


async def test_a_fetch_that_outlasts_the_gateway_timeout_succeeds_while_bytes_move(
    tmp_path: Path,
) -> None:
    """The gateway's call to svc-overlay had a 5 s total timeout: any object that took longer to
    come through a peer (1 GiB did) was 503. A peer paced at 2 MB/s sends 12 MB in ~6 s."""
    data = os.urandom(12_000_000)
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            (tmp_path / "a").mkdir()
            slow = services_toml("micronode", {"svc-overlay": {"rate_conn": 2_000_000.0}})
            a = await stack.enter_async_context(
                start_node(tmp_path / "a", config=FAST_CONFIG + "\n" + slow)
            )
            token = await a.mint(ops=["put"], ttl=600)
            pieces = (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
            host, port = a.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
            stored = await trio.to_thread.run_sync(
                lambda: http_request(
                    host, int(port), "PUT", "/o", pieces, {"authorization": f"Bearer {token}"}
                )
            )
            assert stored.status == 201, stored.body
            b = await stack.enter_async_context(node(tmp_path, "b", [await overlay_addr(a)]))
            start = trio.current_time()
            status, body = await trio.to_thread.run_sync(gateway_get, b, object_id(data))
            took = trio.current_time() - start
            assert status == 200 and body == data, (status, body[:200])
            assert took > 5.0  # it did outlast the gateway's 5 s request timeout
