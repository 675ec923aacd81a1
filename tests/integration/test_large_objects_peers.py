"""Chunked objects through a peer (``specs/objects.md``): B serves what only A holds while it
fetches it chunk by chunk, keeps a verified copy, and resumes from the chunks it already holds
after its svc-overlay is killed halfway."""

from __future__ import annotations

import http.client
import json
import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from ipc import manifest
from tests.integration.test_fetch_hostile import hostile_peer
from tests.integration.test_overlay_nodes import _gateway, node, overlay_addr, put_file
from tests.support.node_harness import FAST_CONFIG, http_request, poll_until, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.integration
MiB = manifest.CHUNK


def stream_get(host: str, port: int, path: str, stop_after: int | None = None) -> bytes:
    """The body as it arrives (up to ``stop_after`` bytes, then the connection is dropped)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        got = bytearray()
        while piece := resp.read(256 * 1024):
            got += piece
            if stop_after is not None and len(got) >= stop_after:
                break
        return bytes(got)
    finally:
        conn.close()


async def test_a_large_object_streams_through_a_peer_and_a_cut_fetch_resumes(
    tmp_path: Path,
) -> None:
    data = os.urandom(300 * MiB + 999)
    src = tmp_path / "big"
    src.write_bytes(data)
    with trio.fail_after(240):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            obj_id = await put_file(a, src)
            assert obj_id == manifest.object_id(data)
            b = await stack.enter_async_context(node(tmp_path, "b", [await overlay_addr(a)]))
            host, port = _gateway(b)

            # the first GET is cut when B's svc-overlay is killed halfway through the object
            overlay_pid = (await b.service("svc-overlay"))["pid"]
            half = await trio.to_thread.run_sync(
                stream_get, host, port, f"/o/{obj_id}", len(data) // 2
            )
            assert half == data[: len(half)]  # what came was the object's own bytes
            os.kill(overlay_pid, signal.SIGKILL)
            await b.wait_service("svc-overlay", state="ready", not_pid=overlay_pid)
            before = await b.metric("bytes_in_total")

            whole = await trio.to_thread.run_sync(stream_get, host, port, f"/o/{obj_id}")
            assert whole == data
            again = await b.metric("bytes_in_total") - before
            missing = len(data) - len(half)
            # resumed: only the chunks B did not hold yet came again (overhead: frames, TLS)
            assert again <= (missing + 3 * MiB) * 1.05, (again, missing)


async def test_a_provider_that_sends_a_corrupt_chunk_is_passed_over_and_never_served(
    tmp_path: Path,
) -> None:
    """B lists a liar first and then A: the liar serves A's store, except one chunk it sends
    with a byte flipped (and B asks it first for that chunk). B's client gets the object whole;
    the bad copy is dropped and counted against the liar, and the liar is not asked for the
    object's other chunks from then on."""
    data = os.urandom(8 * MiB)
    obj_id = manifest.object_id(data)
    chunk_ids = [manifest.object_id(data[i : i + MiB]) for i in range(0, len(data), MiB)]
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, "a"))
            src = tmp_path / "obj"
            src.write_bytes(data)
            assert await put_file(a, src) == obj_id
            store = next(a.runtime_dir.rglob(chunk_ids[0][3:])).parent.parent
            # the liar is peers[0]: asked first for the even chunks (a chunk's index is where
            # its fetch starts among the providers: overlay fetch "order")
            bad = chunk_ids[2]
            liar = await stack.enter_async_context(
                hostile_peer("corrupt", "--root", str(store), "--corrupt", bad)
            )
            b = await stack.enter_async_context(
                node(tmp_path, "b", [liar.addr, await overlay_addr(a)])
            )
            got = await trio.to_thread.run_sync(stream_get, *_gateway(b), f"/o/{obj_id}")
            assert got == data
            liar_id = liar.addr.split("@")[0]

            def events(name: str) -> list[dict]:
                return [json.loads(x) for x in b.logs().splitlines() if f'"{name}"' in x]

            async def logged() -> list[dict] | None:  # the log reaches the file a bit later
                failed = events("fetch_failed")  # its copy did not hash to the id
                seen = any(
                    f["id"] == bad and f["peer"] == liar_id and "digest_mismatch" in f["reason"]
                    for f in failed
                )
                return (events("provider_dropped") or None) if seen else None

            dropped = await poll_until(logged, 10, "provider_dropped in B's log")
            assert {(d["peer"], d["group"]) for d in dropped} == {(liar_id, obj_id)}, dropped


async def test_what_a_fetch_needs_is_reserved_before_its_first_byte(tmp_path: Path) -> None:
    """B's store takes 12 MiB. X (8 MiB) streams slowly from A; Y (8 MiB) asked meanwhile
    would fit what is free at that moment, but not beside X's reservation: 507 before a byte
    (without the reservation Y began, then its body was cut when the store filled)."""
    x, y = os.urandom(8 * MiB), os.urandom(8 * MiB)
    paced = services_toml("micronode", {"svc-overlay": {"rate_peer": 2_000_000.0}})
    small = services_toml("micronode", {"svc-storage": {"max_bytes": 12 * MiB}})
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            (tmp_path / "a").mkdir()
            a = await stack.enter_async_context(
                start_node(tmp_path / "a", config=FAST_CONFIG + "\n" + paced)
            )
            ids = []
            for data, name in ((x, "x"), (y, "y")):
                (tmp_path / name).write_bytes(data)
                ids.append(await put_file(a, tmp_path / name))
            peers = f"[overlay]\npeers = {json.dumps([await overlay_addr(a)])}\n"
            (tmp_path / "b").mkdir()
            b = await stack.enter_async_context(
                start_node(tmp_path / "b", config=FAST_CONFIG.replace("[overlay]\n", peers) + small)
            )
            host, port = _gateway(b)
            answers: dict[str, object] = {}

            async def get_x() -> None:
                answers["x"] = await trio.to_thread.run_sync(stream_get, host, port, f"/o/{ids[0]}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(get_x)
                while await b.metric("object_chunk_reads_total") < 1:  # X's first chunk is out
                    await trio.sleep(0.01)
                second = await trio.to_thread.run_sync(
                    lambda: http_request(host, port, "GET", f"/o/{ids[1]}", timeout=30)
                )
            assert answers["x"] == x
            assert second.status == 507 and second.reason() == "insufficient_storage"
            assert "beside the fetches under way" in second.json()["detail"]
