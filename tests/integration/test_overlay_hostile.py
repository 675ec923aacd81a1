"""svc-overlay under attack by strangers (real nodes, real attacker processes, loopback only):
idle sockets must not crowd out a pinned peer, and readers that never read must not grow the
overlay's memory past its send budget. Attackers: ``tests/support/attackers.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.integration.test_overlay_nodes import gateway_get, node, overlay_addr, put
from tests.support.node_harness import REPO, RunningNode, child_env, http_request, poll_until

pytestmark = pytest.mark.integration

SOURCES = ",".join(f"127.0.0.{i}" for i in range(2, 12))  # ten attacker addresses


class Attack:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.holding = 0
        self.opened = 0

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.aclose()
        with trio.move_on_after(10):
            await self.proc.wait()


@asynccontextmanager
async def attack(*args: str) -> AsyncIterator[Attack]:
    cmd = [sys.executable, "-m", "tests.support.attackers", *args, "--seconds", "90"]
    proc = await trio.lowlevel.open_process(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), cwd=str(REPO)
    )
    assert proc.stdin is not None and proc.stdout is not None
    running = Attack(proc)

    async def follow() -> None:
        buf = b""
        assert proc.stdout is not None
        async for data in proc.stdout:
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                words = line.split()
                running.holding, running.opened = int(words[1]), int(words[3])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        try:
            yield running
        finally:
            await running.stop()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()


class PeakRss:
    """The highest RSS of ``pid`` seen by ``sample`` (from when it was made)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = rss_mb(pid)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb(self.pid))

    async def hold(self, seconds: float) -> None:
        """Sample every 0.1 s for ``seconds`` (while an attack holds on)."""
        for _ in range(round(seconds * 10)):
            self.sample()
            await trio.sleep(0.1)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def test_2000_idle_sockets_do_not_keep_a_pinned_peer_out(tmp_path: Path) -> None:
    objects = [os.urandom(30_000 + i) for i in range(3)]
    with trio.fail_after(150):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            ids = [await put(a, data) for data in objects]
            target = a.ready_line["overlay"].removeprefix("tcp://")
            flood = await stack.enter_async_context(
                attack("idle", target, "2000", "--sources", "127.0.0.2")
            )
            # 2000 sockets kept open (reopened as soon as the node closes one)
            await poll_until(lambda: flood.opened >= 2000, 60, "2000 idle sockets opened")
            b = await stack.enter_async_context(node(tmp_path, "b", [await overlay_addr(a)]))
            for obj_id, data in zip(ids, objects, strict=True):  # B dials A during the flood
                status, body = await trio.to_thread.run_sync(gateway_get, b, obj_id)
                assert (status, body) == (200, data)
            opened = flood.opened
            await poll_until(lambda: flood.opened > opened, 10, "the flood to go on")


async def put_big(n: RunningNode, data: bytes) -> str:
    token = await n.mint(ops=["put"], ttl=600)
    host, port = n.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    pieces = (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
    resp = await trio.to_thread.run_sync(
        lambda: http_request(
            host, int(port), "PUT", "/o", pieces, {"authorization": f"Bearer {token}"}
        )
    )
    assert resp.status == 201, resp.body
    return str(resp.json()["id"])


async def test_readers_that_never_read_stay_within_the_send_budget(tmp_path: Path) -> None:
    """300 fresh identities over ten addresses, each asking 4 x a 20 MiB object and reading
    nothing: the overlay held ~1.5 GB before; now its send budget (32 MiB on a micronode) and
    the per-connection buffers bound it, and the node still serves a pinned peer."""
    with trio.fail_after(200):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            obj = await put_big(a, os.urandom(20 << 20))
            pid = (await a.service("svc-overlay"))["pid"]
            rss = PeakRss(pid)
            readers = await stack.enter_async_context(
                attack(
                    "slow-readers", await overlay_addr(a), "300", "--obj", obj, "--sources", SOURCES
                )
            )

            def held() -> bool:
                rss.sample()
                return readers.holding >= 100  # a micronode serves 128 connections at most

            await poll_until(held, 90, "100 slow readers connected")
            await rss.hold(2.0)
            await readers.stop()
            before, peak = rss.before, rss.peak
            after = await _settled_rss(pid, before)
            small = os.urandom(10_000)
            small_id = await put(a, small)
            b = await stack.enter_async_context(node(tmp_path, "b", [await overlay_addr(a)]))
            status, body = await trio.to_thread.run_sync(gateway_get, b, small_id)
            assert (status, body) == (200, small)
            print(f"overlay RSS {before:.0f} MB -> peak {peak:.0f} MB -> after {after:.0f} MB")
            assert peak - before < 150, (before, peak)
            assert after - before < 40, (before, after)  # given back after the attack


async def _settled_rss(pid: int, baseline: float) -> float:
    """The RSS once back within 40 MB of ``baseline`` (or the lowest seen in 15 s)."""
    lowest = rss_mb(pid)
    with trio.move_on_after(15):
        while lowest - baseline >= 40:
            await trio.sleep(0.25)
            lowest = min(lowest, rss_mb(pid))
    return lowest
