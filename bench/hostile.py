"""Attack bench: a node under the attacks a stranger can make without credentials, each beside a
baseline measured in the same run (loopback only: 127.0.0.0/8; every attack is bounded in time).

Rows:

* ``idle-socket flood``: a pinned peer's fetches through node B from node A, without and then
  with ``--idle`` (2,000) TCP sockets held open against A's overlay from 127.0.0.2 (reopened as
  soon as A closes them): success rate and p50 of the good fetches.
* ``slow readers``: A's svc-overlay RSS at rest, at the peak while ``--readers`` (300) fresh
  TLS identities over ten addresses each ask 4 x a 20 MiB object and never read, and 5 s after
  they left. A is a macronode (``max_conns`` 1024) so all of them get in.
* ``junk-streaming peer``: a peer that announces 1 GiB - 1 and streams random bytes; a client
  GETs the id through B with a 5 s timeout and hangs up: bytes the peer got to send, bytes
  B's store holds after, seconds until the stream stopped.
* ``revocation + passport kill``: writes accepted with a token after ``ronctl token revoke``
  returned, while svc-passport is killed (-9) right after the revoke, over 3 s; and the revoke's
  own time.

    python bench/hostile.py [--idle 2000] [--readers 300] [--fetches 20] [--only idle,readers,...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_fetch_hostile import hostile_peer, id_of  # noqa: E402
from tests.integration.test_overlay_hostile import (  # noqa: E402
    SOURCES,
    PeakRss,
    attack,
    put_big,
    rss_mb,
)
from tests.integration.test_overlay_nodes import gateway_get, overlay_addr, put  # noqa: E402
from tests.support.node_harness import (  # noqa: E402
    FAST_CONFIG,
    RunningNode,
    http_request,
    poll_until,
    start_node,
)

ROWS: list[tuple[str, str, str, str]] = []


def row(what: str, baseline: str, attacked: str, note: str) -> None:
    ROWS.append((what, baseline, attacked, note))
    print(f"  {what}: {baseline} -> {attacked} ({note})", file=sys.stderr, flush=True)


def node_config(peers: list[str]) -> str:
    return FAST_CONFIG.replace("[overlay]\n", f"[overlay]\npeers = {json.dumps(peers)}\n")


async def a_node(
    stack: AsyncExitStack, tmp: Path, name: str, peers: list[str] = (), profile="micronode"
):  # type: ignore[assignment]
    where = tmp / name
    where.mkdir()
    extra = ("--data-dir", str(where / "data")) if profile == "macronode" else ()
    return await stack.enter_async_context(
        start_node(where, profile, config=node_config(list(peers)), extra_args=extra)
    )


async def fetch_round(b: RunningNode, ids: list[str]) -> tuple[int, float]:
    """(successes, p50 ms) of one GET each through B."""
    times, ok = [], 0
    for obj_id in ids:
        start = time.perf_counter()
        status, _ = await trio.to_thread.run_sync(gateway_get, b, obj_id)
        times.append((time.perf_counter() - start) * 1000)
        ok += status == 200
    return ok, statistics.median(times)


async def idle_flood(tmp: Path, idle: int, fetches: int) -> None:
    async with AsyncExitStack() as stack:
        a = await a_node(stack, tmp, "flood-a")
        ids = [await put(a, os.urandom(20_000 + i)) for i in range(2 * fetches)]
        b = await a_node(stack, tmp, "flood-b", [await overlay_addr(a)])
        ok0, p0 = await fetch_round(b, ids[:fetches])
        await b.ronctl("restart", "svc-overlay")  # B dials A afresh under the flood
        target = a.ready_line["overlay"].removeprefix("tcp://")
        flood = await stack.enter_async_context(
            attack("idle", target, str(idle), "--sources", "127.0.0.2")
        )
        await poll_until(lambda: flood.opened >= idle, 60, f"{idle} idle sockets opened")
        ok1, p1 = await fetch_round(b, ids[fetches:])
        row(
            f"idle-socket flood ({idle} sockets)",
            f"{ok0}/{fetches} ok, p50 {p0:.0f} ms",
            f"{ok1}/{fetches} ok, p50 {p1:.0f} ms",
            f"sockets opened by the attacker: {flood.opened}",
        )


async def slow_readers(tmp: Path, readers: int) -> None:
    async with AsyncExitStack() as stack:
        a = await a_node(stack, tmp, "slow-a", profile="macronode")
        obj = await put_big(a, os.urandom(20 << 20))
        pid = (await a.service("svc-overlay"))["pid"]
        rss = PeakRss(pid)
        att = await stack.enter_async_context(
            attack(
                "slow-readers",
                await overlay_addr(a),
                str(readers),
                "--obj",
                obj,
                "--sources",
                SOURCES,
            )
        )
        deadline = trio.current_time() + 25
        while trio.current_time() < deadline and att.opened < readers:
            await rss.hold(0.1)
        await rss.hold(3.0)
        before, peak = rss.before, rss.peak
        held = att.holding
        await att.stop()
        await trio.sleep(5)
        after = rss_mb(pid)
        row(
            f"slow readers ({readers} identities x 4 x 20 MiB)",
            f"overlay RSS {before:.0f} MB",
            f"peak {peak:.0f} MB, {after:.0f} MB 5 s after",
            f"{held} connections held at the end; target <= 200 MB",
        )


async def junk_peer(tmp: Path) -> None:
    async with AsyncExitStack() as stack:
        junk = await stack.enter_async_context(hostile_peer("junk"))
        b = await a_node(stack, tmp, "junk-b", [junk.addr])
        host, port = b.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
        start = trio.current_time()
        with trio.move_on_after(5):
            await trio.to_thread.run_sync(
                lambda: http_request(host, int(port), "GET", f"/o/{id_of(b'x')}", timeout=5),
                abandon_on_cancel=True,
            )
        hung_up = trio.current_time()
        last, still = junk.streamed, hung_up
        while trio.current_time() - still < 2 and trio.current_time() - hung_up < 60:
            await trio.sleep(0.25)
            if junk.streamed != last:
                last, still = junk.streamed, trio.current_time()
        stored = await b.metric("storage_bytes")
        row(
            "junk-streaming peer (announces 1 GiB - 1)",
            "client waits 5 s, then hangs up",
            f"{junk.streamed / 2**20:.0f} MiB sent by the peer, stopped "
            f"{still - hung_up:.1f} s after the hang-up",
            f"{stored:.0f} bytes kept in the store; {hung_up - start:.1f} s to the hang-up",
        )


async def revocation(tmp: Path) -> None:
    async with AsyncExitStack() as stack:
        n = await a_node(stack, tmp, "revoke")
        host, port = n.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
        token = await n.mint(ops=["put"], ttl=600)
        token_id = json.loads((await n.ronctl("token", "inspect", token)).stdout)["id"]
        accepted = attempts = 0
        stop = trio.Event()

        async def writer() -> None:
            nonlocal accepted, attempts
            i = 0
            headers = {"authorization": f"Bearer {token}"}
            while not stop.is_set():
                i += 1
                body = f"after revoke {i}".encode()
                resp = await trio.to_thread.run_sync(
                    http_request, host, int(port), "PUT", "/o", body, headers
                )
                if counting:
                    attempts += 1
                    accepted += resp.status in (200, 201)

        counting = False
        # steady state: svc-passport has heard from every verifier (a revoke in its first 2 s
        # also waits out that warm-up, services/passport/verifiers.py)
        await poll_until(lambda: _uptime(n, "svc-passport"), 10, "svc-passport up for 3 s")
        pid = (await n.service("svc-passport"))["pid"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            started = time.perf_counter()
            done = await n.ronctl("token", "revoke", token_id)
            took = (time.perf_counter() - started) * 1000
            counting = True
            os.kill(pid, signal.SIGKILL)
            await trio.sleep(3)
            stop.set()
        row(
            "revocation, then kill -9 of svc-passport",
            f"`token revoke` exit {done.returncode} in {took:.0f} ms",
            f"{accepted} of {attempts} writes accepted after it returned (3 s)",
            "must be 0",
        )


async def _uptime(n: RunningNode, service: str) -> bool:
    return float((await n.service(service)).get("uptime") or 0) >= 3.0


async def main(args: argparse.Namespace) -> None:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hostile-{os.getpid()}"
    tmp.mkdir(parents=True)
    only = set(args.only.split(",")) if args.only else {"idle", "readers", "junk", "revoke"}
    with trio.fail_after(600):
        if "idle" in only:
            await idle_flood(tmp, args.idle, args.fetches)
        if "readers" in only:
            await slow_readers(tmp, args.readers)
        if "junk" in only:
            await junk_peer(tmp)
        if "revoke" in only:
            await revocation(tmp)
    width = [max(len(r[i]) for r in [*ROWS, ("attack", "baseline", "under attack", "")])
             for i in range(4)]  # fmt: skip
    for r in [("attack", "baseline", "under attack", "note"), *ROWS]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, width, strict=True)).rstrip())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--readers", type=int, default=300)
    parser.add_argument("--fetches", type=int, default=20)
    parser.add_argument("--only", default="", help="a subset of idle,readers,junk,revoke")
    trio.run(main, parser.parse_args())
