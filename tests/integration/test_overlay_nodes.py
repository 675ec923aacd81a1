"""Nodes talking to nodes (real processes, real TLS on 127.0.0.1): fetch by id through a peer.

Three nodes: A holds an object; B and C list A as their peer and serve it from their gateways,
byte for byte, after fetching, verifying and committing it; a fourth node whose peer address
names the wrong node id is refused by the pin and answers 503, never bytes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from ipc.sdk import Client
from tests.support.fault_proxy import FaultProxy
from tests.support.node_harness import FAST_CONFIG, RunningNode, http_request, start_node

pytestmark = pytest.mark.integration


@asynccontextmanager
async def node(
    tmp_path: Path,
    name: str,
    peers: list[str] = (),
    pq: str = "off",  # type: ignore[assignment]
) -> AsyncIterator[RunningNode]:
    """A micronode whose ``overlay.peers`` are ``peers``, with ``pq.mode`` ``pq``."""
    where = tmp_path / name
    where.mkdir()
    config = FAST_CONFIG.replace("[overlay]\n", f"[overlay]\npeers = {json.dumps(list(peers))}\n")
    config += f'\n[pq]\nmode = "{pq}"\n'
    async with start_node(where, config=config) as running:
        yield running


async def overlay_addr(n: RunningNode) -> str:
    version = (await n.get("/version")).json()
    return f"{version['node_id']}@{n.ready_line['overlay'].removeprefix('tcp://')}"


def _gateway(n: RunningNode) -> tuple[str, int]:
    host, port = n.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def gateway_get(n: RunningNode, obj_id: str) -> tuple[int, bytes]:
    resp = http_request(*_gateway(n), "GET", f"/o/{obj_id}", timeout=30)
    return resp.status, resp.body


async def put(n: RunningNode, data: bytes) -> str:
    token = await n.mint(ops=["put"], ttl=600)
    resp = await trio.to_thread.run_sync(
        lambda: http_request(
            *_gateway(n), "PUT", "/o", data, headers={"authorization": f"Bearer {token}"}
        )
    )
    assert resp.status == 201, resp.body
    return str(resp.json()["id"])


async def test_b_and_c_serve_what_only_a_holds_and_a_wrong_pin_gets_nothing(
    tmp_path: Path,
) -> None:
    data = os.urandom(300_000)  # several DATA chunks
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            assert a.ready_line["overlay"].startswith("tcp://127.0.0.1:")
            obj_id = await put(a, data)
            a_addr = await overlay_addr(a)
            # straight from A's overlay, as an app (the SDK) or an operator would
            out = tmp_path / "fetched"
            done = await a.ronctl("get", obj_id, "--peer", a_addr, "-o", str(out))
            assert done.returncode == 0, done.stderr
            assert out.read_bytes() == data
            impostor = "node:" + "cd" * 32 + "@" + a_addr.split("@", 1)[1]
            done = await a.ronctl("get", obj_id, "--peer", impostor, "-o", str(tmp_path / "x"))
            assert done.returncode == 1 and b"cannot reach peer" in done.stderr
            assert done.stderr.count(b"\n") == 1 and not (tmp_path / "x").exists()

            # an app stores through A's overlay with the SDK (a write token from A)
            sdk_data = os.urandom(150_000)
            write = await a.mint(ops=["put"], ttl=600)

            def sdk_put() -> str:
                with Client(a_addr) as sdk:
                    return sdk.put(sdk_data, write).id

            sdk_id = await trio.to_thread.run_sync(sdk_put)

            b = await stack.enter_async_context(node(tmp_path, "b", [a_addr]))
            c = await stack.enter_async_context(node(tmp_path, "c", [a_addr]))
            status, body = await trio.to_thread.run_sync(gateway_get, b, sdk_id)
            assert status == 200 and body == sdk_data

            for peer in (b, c):
                status, body = await trio.to_thread.run_sync(gateway_get, peer, obj_id)
                assert status == 200 and body == data
                # committed there: served again without asking A (one fetch logged)
                status, body = await trio.to_thread.run_sync(gateway_get, peer, obj_id)
                assert status == 200 and body == data
                fetched = 2 if peer is b else 1  # B also fetched the SDK's object
                assert peer.logs().count('"event":"object_fetched"') == fetched

            # A serves B's and C's fetch connections (the gauge counts its listener's; their
            # svc-dht joined through A too) and lists them as inbound peers
            assert await a.metric("conn_inflight") >= 2
            inbound = json.loads((await a.ronctl("peers", "--json")).stdout)["peers"]
            b_id, c_id = [(await overlay_addr(n)).partition("@")[0] for n in (b, c)]
            assert {p["node_id"] for p in inbound if p["direction"] == "in"} >= {b_id, c_id}
            listed = await b.ronctl("peers", "--json")
            assert listed.returncode == 0, listed.stderr
            (peer,) = [p for p in json.loads(listed.stdout)["peers"] if p["listed"]]
            assert peer["addr"] == a_addr and peer["state"] == "connected"
            assert peer["bytes_in"] == len(data) + len(sdk_data) and peer["last_error"] == ""
            table = await b.ronctl("peers")
            assert b"connected" in table.stdout and b"NODE ID" in table.stdout

            missing = "b3:" + "0" * 64
            status, body = await trio.to_thread.run_sync(gateway_get, b, missing)
            assert status == 404 and json.loads(body)["error"] == "not_found"

            # D names A's address with another node's id: the TLS pin refuses A
            wrong = "node:" + "ab" * 32 + "@" + a_addr.split("@", 1)[1]
            d = await stack.enter_async_context(node(tmp_path, "d", [wrong]))
            status, body = await trio.to_thread.run_sync(gateway_get, d, obj_id)
            assert status == 503 and json.loads(body)["error"] == "unavailable"
            assert await d.metric("transport_dials_total", result="pin_mismatch") >= 1
            assert '"event":"fetch_failed"' in d.logs()
            (peer,) = json.loads((await d.ronctl("peers", "--json")).stdout)["peers"]
            assert peer["state"] == "down" and "expected" in peer["last_error"]


async def put_file(n: RunningNode, path: Path) -> str:
    done = await n.ronctl("put", str(path), "--no-progress")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


async def test_a_hedged_fetch_succeeds_when_the_first_provider_stalls(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            a1 = await stack.enter_async_context(node(tmp_path, "a1"))
            a2 = await stack.enter_async_context(node(tmp_path, "a2"))
            obj_id = await put(a1, data)
            assert await put(a2, data) == obj_id
            addrs = [await overlay_addr(a1), await overlay_addr(a2)]
            b = await stack.enter_async_context(node(tmp_path, "b", addrs))
            # the provider B asks first for this id (svc-overlay's ring order), frozen
            first = int(obj_id[3:11], 16) % 2
            stalled, other = (a1, a2) if first == 0 else (a2, a1)
            pid = (await stalled.service("svc-overlay"))["pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                status, body = await trio.to_thread.run_sync(gateway_get, b, obj_id)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert status == 200 and body == data
            fetched = [
                json.loads(line) for line in b.logs().splitlines() if "object_fetched" in line
            ]
            assert [f["peer"] for f in fetched] == [addrs[1 - first].split("@")[0]]
            assert other is not stalled


async def test_a_provider_killed_mid_stream_never_yields_wrong_bytes(tmp_path: Path) -> None:
    """A 48 MiB object streams to B's client chunk by chunk as B fetches them from A; A's
    svc-overlay is killed under it. The client gets the object whole (B asks again while A
    restarts), or a 503 before any byte, or a body cut short of its Content-Length: never a
    byte that is not the object's."""
    big = tmp_path / "big"
    big.write_bytes(os.urandom(48 << 20))
    with trio.fail_after(180):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            obj_id = await put_file(a, big)
            b = await stack.enter_async_context(node(tmp_path, "b", [await overlay_addr(a)]))
            pid = (await a.service("svc-overlay"))["pid"]
            answers: list[tuple[int, bytes]] = []

            def get_tolerating_a_cut() -> tuple[int, bytes]:
                try:
                    return gateway_get(b, obj_id)
                except http.client.IncompleteRead as cut:
                    return -1, cut.partial  # the connection closed short of Content-Length

            async def fetch() -> None:
                answers.append(await trio.to_thread.run_sync(get_tolerating_a_cut))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                while await b.metric("bytes_in_total") < 1 << 20:  # A is streaming to B
                    await trio.sleep(0.005)
                os.kill(pid, signal.SIGKILL)
            status, body = answers[0]
            if status == 200:  # whole: then it is the object
                assert body == big.read_bytes()
            elif status == -1:  # cut: what came is the object's beginning, and not all of it
                assert 0 < len(body) < len(big.read_bytes())
                assert body == big.read_bytes()[: len(body)]
            else:
                assert status == 503 and json.loads(body)["error"] == "unavailable"
            await a.wait_service("svc-overlay", state="ready", not_pid=pid)
            with trio.fail_after(60):
                while True:  # the client retries, as Retry-After says
                    status, body = await trio.to_thread.run_sync(gateway_get, b, obj_id)
                    if status == 200:
                        break
                    assert status == 503
                    await trio.sleep(0.2)
            assert body == big.read_bytes()


async def test_pq_postures_between_real_nodes(tmp_path: Path) -> None:
    """hybrid with hybrid seals; hybrid with off falls back (counted); required with off is
    refused (503, nothing served); /version and ronctl peers show what was negotiated."""
    data = os.urandom(100_000)
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            hyb = await stack.enter_async_context(node(tmp_path, "hyb", pq="hybrid"))
            off = await stack.enter_async_context(node(tmp_path, "off", pq="off"))
            obj_id = await put(hyb, data)
            assert await put(off, data) == obj_id
            cases = (("b", "hybrid", hyb, "pq"), ("c", "hybrid", off, "fallback"))
            for name, mode, provider, outcome in cases:
                peer = await stack.enter_async_context(
                    node(tmp_path, name, [await overlay_addr(provider)], pq=mode)
                )
                status, body = await trio.to_thread.run_sync(gateway_get, peer, obj_id)
                assert status == 200 and body == data
                version = (await peer.get("/version")).json()
                assert version["pq"] == mode and version["peers"][0]["pq"] == outcome
                # one per connection that fell back: svc-overlay's and svc-dht's own
                fallbacks = await peer.metric("pq_fallback_total")
                assert (fallbacks >= 1) if outcome == "fallback" else (fallbacks == 0)
            strict = await stack.enter_async_context(
                node(tmp_path, "d", [await overlay_addr(off)], pq="required")
            )
            status, body = await trio.to_thread.run_sync(gateway_get, strict, obj_id)
            assert status == 503 and json.loads(body)["error"] == "unavailable"
            peers = json.loads((await strict.ronctl("peers", "--json")).stdout)["peers"]
            (peer_state,) = [p for p in peers if p["listed"]]
            assert (
                peer_state["state"] == "down" and "pq.mode = required" in peer_state["last_error"]
            )


async def test_partition_drill_fetches_degrade_and_recover(tmp_path: Path) -> None:
    """A cuts off from B (a fault proxy on their link): B's fetches of what only A holds answer
    503 with Retry-After (never wrong bytes, never a hang past the fetch deadline) and B shows A
    as down; after the heal, the next fetches succeed again. The drill prints what it saw."""
    objects = [os.urandom(50_000 + i) for i in range(6)]
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            ids_ = [await put(a, data) for data in objects]
            a_id, a_hostport = (await overlay_addr(a)).split("@")
            host, port = a_hostport.rsplit(":", 1)
            proxy = FaultProxy(host, int(port))
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(proxy.run)
            stack.callback(nursery.cancel_scope.cancel)
            b = await stack.enter_async_context(
                node(tmp_path, "b", [f"{a_id}@127.0.0.1:{proxy.port}"])
            )
            seen: dict[str, list[int]] = {"before": [], "cut": [], "healed": []}

            async def fetch(phase: str, i: int) -> None:
                status, body = await trio.to_thread.run_sync(gateway_get, b, ids_[i])
                assert status in (200, 503)
                if status == 200:
                    assert body == objects[i]
                else:
                    assert json.loads(body)["error"] == "unavailable"
                seen[phase].append(status)

            for i in (0, 1):
                await fetch("before", i)
            proxy.cut()
            for i in (2, 3):
                await fetch("cut", i)
            (state,) = json.loads((await b.ronctl("peers", "--json")).stdout)["peers"]
            proxy.heal()
            for i in (2, 3, 4, 5):
                await fetch("healed", i)
            print(f"partition drill: {seen}; proxy passed {proxy.passed}, refused {proxy.refused}")
            assert seen["before"] == [200, 200]
            assert seen["cut"] == [503, 503] and proxy.refused >= 1
            assert state["state"] == "down" and state["last_error"]
            assert seen["healed"] == [200, 200, 200, 200]
