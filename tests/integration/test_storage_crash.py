"""kill -9 drills of svc-storage and svc-index under concurrent writers, in both profiles.

The invariant: whatever was acknowledged is there, byte for byte, after the restart; nothing torn
is ever visible (every file under ``objects/<xx>/`` verifies against its name).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest
import trio

from ipc import ids, oap
from ipc.commands import CommandClient
from ipc.proto import index, storage
from ipc.proto.codec import call
from services.lib import objstore
from tests.integration.test_storage_service import INDEX, STORAGE, read_back, storage_node, upload
from tests.support.node_harness import RunningNode, poll_until

pytestmark = pytest.mark.slow
WRITERS = 8
PROFILES = ["micronode", "macronode"]


def verify_every_object(root: Path) -> int:
    """Open every committed file through the verifying reader; returns how many there are."""
    count = 0
    for fanout in objstore.FANOUT:
        for path in (root / fanout).iterdir():
            obj_id = ids.PREFIX + path.name
            objstore.open_verified(root, obj_id).close()  # raises on a torn or foreign file
            count += 1
    return count


def _issued_after(client: CommandClient, mark: int) -> int:
    """How many unanswered requests of ``client`` were issued after request id ``mark``."""
    return sum(1 for rid in client._pending if int.from_bytes(rid, "big") > mark)


async def kill_mid_request(node: RunningNode, service: str, client: CommandClient) -> None:
    """kill -9 ``service`` while requests are in flight, then wait for its restart. The service's
    own `slow` fault hook holds requests in its handler first, so some are surely caught."""
    pid = (await node.service(service))["pid"]
    slow = await node.post(f"/fault/{service}?fault=slow&delay_ms=300&duration_s=30")
    assert slow.status == 200, slow.body
    # Only requests issued from now on are surely held: one issued earlier may already have its
    # answer on the way (a busy machine makes that likely), and would then survive the kill.
    mark = next(client._ids)  # request ids count up; this one is never used
    await poll_until(lambda: _issued_after(client, mark) >= 2, 10, "held requests in flight")
    os.kill(pid, signal.SIGKILL)  # no checkpoint since the check: they are still in flight
    await node.wait_service(service, state="ready", not_pid=pid)


@pytest.mark.parametrize("profile", PROFILES)
async def test_kill9_of_storage_during_8_writers_loses_no_acked_commit(
    tmp_path: Path, profile: str
) -> None:
    acked: dict[str, bytes] = {}
    counts = [0] * WRITERS
    unknown = [0]
    stop = trio.Event()

    async def writer(i: int, client: CommandClient, root: Path) -> None:
        rng = random.Random(i)
        k = 0
        while not stop.is_set():
            k += 1
            size = rng.choice([0, 100, 4096, 65536, 300_000])
            data = f"{i}/{k}/".encode() + rng.randbytes(size)
            try:
                reply = await upload(client, root, data)
            except oap.OapError:  # no answer: the outcome is unknown, nothing was promised
                unknown[0] += 1
                continue
            assert reply["id"] == ids.id_of(data)
            acked[reply["id"]] = data
            counts[i] += 1

    with trio.fail_after(120):
        async with (
            storage_node(tmp_path, profile) as (node, root),
            CommandClient.connect(node.runtime_dir, STORAGE, timeout=3) as client,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(WRITERS):
                    nursery.start_soon(writer, i, client, root)
                await poll_until(lambda: min(counts) >= 3, 30, "every writer to be acked 3 times")
                await kill_mid_request(node, STORAGE, client)
                after = sum(counts)
                await poll_until(lambda: sum(counts) >= after + 2 * WRITERS, 30, "more commits")
                stop.set()
            assert await node.metric("service_restarts_total", service=STORAGE) == 1.0
            # every acknowledged commit reads back byte-identical through the verifying reader
            for obj_id, data in acked.items():
                assert await trio.to_thread.run_sync(read_back, root, obj_id) == data, obj_id
            on_disk = await trio.to_thread.run_sync(verify_every_object, root)
            assert unknown[0] > 0, "the kill should catch commits in flight"
            assert on_disk >= len(acked)
            assert on_disk <= len(acked) + unknown[0]  # extra objects only from unknown outcomes
            # usage (restarted from the hint, counted again in the background) is the truth
            await wait_usage_is_the_walk(client, root)


async def wait_usage_is_the_walk(client: CommandClient, root: Path) -> None:
    walked = await trio.to_thread.run_sync(objstore.scan_usage, root)

    async def counted() -> bool:
        usage = await call(client, storage.PROTOCOL, storage.Usage())
        return (usage.bytes, usage.objects) == walked

    with trio.fail_after(30):
        while not await counted():
            await trio.sleep(0.05)


async def index_put(client: CommandClient, name: str, obj_id: str) -> int:
    reply = await call(client, index.PROTOCOL, index.PutName(name=name, id=obj_id))
    return reply.version


@pytest.mark.parametrize("profile", PROFILES)
async def test_kill9_of_index_during_concurrent_updates_loses_no_acked_name(
    tmp_path: Path, profile: str
) -> None:
    acked: dict[str, tuple[int, str]] = {}  # name -> the last acknowledged (version, id)
    in_doubt: dict[str, str] = {}  # name -> id of an update whose outcome is unknown
    counts = [0] * WRITERS
    stop = trio.Event()

    async def writer(i: int, client: CommandClient) -> None:
        names = [f"w{i}/n{j}" for j in range(4)]
        k = 0
        while not stop.is_set():
            name = names[k % len(names)]
            obj_id = ids.id_of(f"{i}/{k}".encode())
            k += 1
            try:
                version = await index_put(client, name, obj_id)
            except oap.OapError:
                in_doubt[name] = obj_id
                return  # this writer's names keep at most one update in doubt
            assert version == acked.get(name, (0, ""))[0] + 1  # one writer per name
            acked[name] = (version, obj_id)
            counts[i] += 1

    with trio.fail_after(120):
        async with (
            storage_node(tmp_path, profile) as (node, _root),
            CommandClient.connect(node.runtime_dir, INDEX, timeout=3) as client,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(WRITERS):
                    nursery.start_soon(writer, i, client)
                await poll_until(lambda: min(counts) >= 5, 30, "every writer to be acked 5 times")
                await kill_mid_request(node, INDEX, client)
                stop.set()
            for name, (version, obj_id) in acked.items():
                got = await call(client, index.PROTOCOL, index.GetName(name=name))
                if got.version == version:
                    assert got.id == obj_id, name
                else:  # only the one update in doubt may have landed on top
                    assert (got.version, got.id) == (version + 1, in_doubt[name]), name
            assert in_doubt, "the kill should catch updates in flight"
            assert await index_put(client, "after/restart", ids.id_of(b"x")) == 1
