"""svc-storage's startup barrier is per fan-out dir and off the start path (issue 29): a store
opens without fsyncing every dir, and a duplicate acknowledged before the background sweep has
reached its dir still waits for that dir's fsync (whatever a killed process left visible is
durable before a duplicate is acknowledged against it: ``specs/storage-protocol.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from services.lib import objstore
from services.storage.settings import StorageSettings
from services.storage.store import Store


async def put_once(store: Store, data: bytes) -> tuple[str, bool]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run_committer)
        result = await store.put(data)
        nursery.cancel_scope.cancel()
    return result


async def test_a_duplicate_waits_for_its_dir_until_the_sweep_has_synced_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "objects"
    first = Store(root, StorageSettings(), None)
    await first.open()
    obj_id, created = await put_once(first, b"left visible by a process that was killed")
    assert created
    fanout = objstore.fanout_of(obj_id)

    synced: list[str] = []
    real_fsync_dir = objstore.fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        synced.append(path.name)
        real_fsync_dir(path)

    monkeypatch.setattr(objstore, "fsync_dir", recording_fsync_dir)
    restarted = Store(root, StorageSettings(), None)
    await restarted.open()
    assert len(synced) < 8, f"open fsynced {len(synced)} dirs: the start walks the store"

    synced.clear()
    again, created = await put_once(restarted, b"left visible by a process that was killed")
    assert (again, created) == (obj_id, False)
    assert fanout in synced, "a duplicate was acknowledged before its dir was fsynced"

    await restarted.sync_fanouts()
    assert set(objstore.FANOUT) <= set(synced)
    synced.clear()
    assert await put_once(restarted, b"left visible by a process that was killed") == (
        obj_id,
        False,
    )
    assert fanout not in synced  # the sweep made it durable: no fsync per duplicate any more
