"""svc-storage's housekeeping over a real ``Store`` on disk: listing, pins, touches and the GC,
including the races its argument covers (``specs/storage-protocol.md``, Garbage collection)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from ipc import ids, oap
from services.lib import objstore
from services.storage.housekeeping import Housekeeper
from services.storage.settings import StorageSettings
from services.storage.store import Store

HOUR = 3600.0
NamedIds = Callable[[], Awaitable[set[str]]]


@asynccontextmanager
async def running_store(root: Path) -> AsyncIterator[Store]:
    store = Store(root, StorageSettings(), None)
    await store.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run_committer)
        yield store
        nursery.cancel_scope.cancel()


def backdate(root: Path, obj_id: str, seconds: float = 2 * HOUR) -> None:
    """Age an object past the grace window: its mtime is what a GC measures."""
    then = time.time() - seconds
    os.utime(objstore.object_path(root, obj_id), (then, then))


def stored(root: Path, obj_id: str) -> bool:
    return objstore.object_path(root, obj_id).is_file()


def no_names() -> NamedIds:
    async def named() -> set[str]:
        return set()

    return named


async def put_old(store: Store, *blobs: bytes) -> list[str]:
    out = []
    for blob in blobs:
        obj_id, _ = await store.put(blob)
        backdate(store.root, obj_id)
        out.append(obj_id)
    return out


async def test_gc_removes_only_old_unpinned_unnamed_objects(tmp_path: Path) -> None:
    async with running_store(tmp_path / "objects") as store:
        garbage, pinned, named = await put_old(store, b"garbage", b"pinned", b"named")
        young, _ = await store.put(b"young")
        named_hex = {ids.parse_id(named)}

        async def names() -> set[str]:
            return named_hex

        keeper = Housekeeper(store, names)
        assert await keeper.pin(pinned) is True
        before = store.usage.bytes

        dry = await keeper.gc(HOUR, dry_run=True)
        assert (dry.removed, dry.freed_bytes, dry.dry_run) == (1, len(b"garbage"), True)
        assert stored(store.root, garbage)

        report = await keeper.gc(HOUR, dry_run=False)
        assert (report.removed, report.kept_pinned, report.kept_named, report.kept_young) == (
            1,
            1,
            1,
            1,
        )
        assert not stored(store.root, garbage)
        assert all(stored(store.root, i) for i in (pinned, named, young))
        assert store.usage.bytes == before - len(b"garbage")
        assert store.usage.objects == 3


async def test_a_duplicate_put_of_an_old_object_restarts_its_grace(tmp_path: Path) -> None:
    async with running_store(tmp_path / "objects") as store:
        (old,) = await put_old(store, b"written long ago")
        again, created = await store.put(b"written long ago")  # acknowledged again, now
        assert (again, created) == (old, False)
        report = await Housekeeper(store, no_names()).gc(HOUR, dry_run=False)
        assert (report.removed, report.kept_young) == (0, 1)
        assert stored(store.root, old)


async def test_a_name_that_lands_after_the_listing_keeps_its_target(tmp_path: Path) -> None:
    """The gateway touches a target before svc-index stores the name; a listing that began
    before the name landed misses it, and the touch alone must keep the object."""
    async with running_store(tmp_path / "objects") as store:
        target, other = await put_old(store, b"about to be named", b"garbage")
        keeper: Housekeeper

        async def listing_misses_the_new_name() -> set[str]:
            assert await keeper.touch(target) is True  # the name put, racing the listing
            return set()

        keeper = Housekeeper(store, listing_misses_the_new_name)
        report = await keeper.gc(HOUR, dry_run=False)
        assert stored(store.root, target)
        assert not stored(store.root, other)
        assert (report.removed, report.kept_young) == (1, 1)
        assert await keeper.touch(other) is False  # a later name put: present is false


async def test_pins_need_a_stored_object_and_say_what_changed(tmp_path: Path) -> None:
    async with running_store(tmp_path / "objects") as store:
        keeper = Housekeeper(store, no_names())
        with pytest.raises(oap.OapError) as info:
            await keeper.pin("b3:" + "ab" * 32)
        assert info.value.reason == "not_found"
        (obj_id,) = await put_old(store, b"keep me")
        assert (await keeper.pin(obj_id), await keeper.pin(obj_id)) == (True, False)
        assert (await keeper.list_pins("", 10)).ids == (obj_id,)
        assert (await keeper.unpin(obj_id), await keeper.unpin(obj_id)) == (True, False)
        assert (await keeper.gc(HOUR, dry_run=False)).removed == 1  # unpinned: garbage now


async def test_listing_pages_in_id_order(tmp_path: Path) -> None:
    async with running_store(tmp_path / "objects") as store:
        keeper = Housekeeper(store, no_names())
        made = sorted([(await store.put(b"object %d" % i))[0] for i in range(7)])
        first = await keeper.list_objects("", 3)
        assert [o.id for o in first.objects] == made[:3] and first.more
        rest = await keeper.list_objects(first.objects[-1].id, 1000)
        assert [o.id for o in rest.objects] == made[3:] and not rest.more
        assert all(o.size == len(b"object 0") and not o.pinned for o in rest.objects)


async def test_one_gc_at_a_time(tmp_path: Path) -> None:
    async with running_store(tmp_path / "objects") as store:
        listing = trio.Event()
        release = trio.Event()

        async def slow_names() -> set[str]:
            listing.set()
            await release.wait()
            return set()

        keeper = Housekeeper(store, slow_names)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keeper.gc, HOUR, False)
            await listing.wait()
            with pytest.raises(oap.OapError) as info:
                await keeper.gc(HOUR, dry_run=True)
            assert info.value.reason == "busy"
            release.set()


async def test_a_manifest_committed_during_the_gc_keeps_the_old_chunks_it_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark phase has listed the store; then a manifest lands (e.g. a fetch through a peer)
    that lists a chunk held long ago and reached by nothing else: the sweep must keep it."""
    from ipc import manifest
    from services.storage import housekeeping

    async with running_store(tmp_path / "objects") as store:
        chunk = os.urandom(manifest.CHUNK)
        tail = b"the last bytes"
        old = await put_old(store, chunk, tail)
        listing = manifest.build(
            [bytes.fromhex(ids.parse_id(i)) for i in old], manifest.CHUNK + len(tail)
        )[-1]
        real_mark = housekeeping.mark
        landed: list[str] = []

        def mark_then_commit(*args: object) -> None:
            real_mark(*args)  # type: ignore[arg-type]
            obj_id, _ = trio.from_thread.run(store.put, listing)
            landed.append(obj_id)

        monkeypatch.setattr(housekeeping, "mark", mark_then_commit)
        report = await Housekeeper(store, no_names()).gc(grace=HOUR, dry_run=False)
        assert landed and stored(store.root, landed[0])
        assert all(stored(store.root, i) for i in old), "a listed chunk was swept"
        assert (report.removed, report.kept_reached, report.kept_young) == (0, 2, 1)
