"""Store housekeeping: listing, pins, touches and the garbage collector (``ronctl ls``, ``pin``,
``gc``). The file work is plain sync code run in worker threads; every step that decides
whether an object lives runs under the committer's lock (``Store.lock``).

Why a GC here is race-free (the argument in full is in ``specs/storage-protocol.md``):

- a commit, a ``put`` or a duplicate of either runs its whole round under the lock, and each
  leaves the object's mtime at "now" (a duplicate touches it), so an object written at any
  moment of a GC is younger than its cutoff and survives it;
- a name put first ``touch``es its target under the lock; the cutoff is fixed before the names
  are read, and the grace window (at least ``GC_MIN_GRACE``) is longer than a touch takes to
  become a name, so a target that the name listing may have missed is young;
- pins are added under the lock, only to present objects, and checked per object under it;
- readers hold the file they verified open, so an unlink during a read never tears it.

- a chunk (or sub-manifest) is kept while a kept manifest lists it (``reach``: the mark phase,
  and every manifest committed while the GC runs).

So an object is removed only if, at the moment of its removal, it is unpinned, unnamed as of a
listing that began after the cutoff, untouched since the cutoff and listed by no kept manifest
(iroh-blobs #247). The sweep
takes the lock one fan-out dir at a time, so commits keep flowing during a long GC (kubo #7752).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from ipc import ids, oap
from ipc.proto import storage as proto
from kernel import logs
from services.lib import objstore
from services.storage.reach import ManifestIndex, Reach, manifest_index, mark
from services.storage.store import Store

__all__ = ["Housekeeper", "NamedIds"]

NamedIds = Callable[[], Awaitable[set[str]]]
"""Every object id some name points at, as hex (read after the GC's cutoff is fixed)."""


def _hex(obj_id: str) -> str:
    try:
        return ids.parse_id(obj_id)
    except ids.BadId as exc:
        raise oap.OapError("schema_invalid", str(exc)) from None


@attrs.define
class _Tally:
    removed: int = 0
    freed_bytes: int = 0
    kept_pinned: int = 0
    kept_named: int = 0
    kept_young: int = 0
    kept_reached: int = 0
    removed_chunks: int = 0


class Housekeeper:
    """svc-storage's housekeeping ops over one ``Store``; one GC at a time."""

    def __init__(self, store: Store, named_ids: NamedIds) -> None:
        self._store = store
        self._root = store.root
        self._named_ids = named_ids
        self._gc_running = False
        self._index: tuple[int, ManifestIndex] | None = None  # (store.manifest_gen, index)

    # -- listing ----------------------------------------------------------------------------

    async def list_objects(self, after: str, limit: int, chunks: bool = False) -> proto.ObjectList:
        """Objects in id order: raw ones and manifests (with the object's size); the parts of
        manifest objects (chunks, sub-manifests) only with ``chunks``."""
        start = _hex(after) if after else ""
        index = await self._manifests()
        rows, more = await trio.to_thread.run_sync(
            _list_objects, self._root, start, limit, index, chunks
        )
        return proto.ObjectList(objects=tuple(rows), more=more)

    async def _manifests(self) -> ManifestIndex:
        """The store's manifests, read again only when they may have changed."""
        gen = self._store.manifest_gen
        if self._index is None or self._index[0] != gen:
            self._index = (gen, await trio.to_thread.run_sync(manifest_index, self._root))
        return self._index[1]

    async def list_pins(self, after: str, limit: int) -> proto.PinList:
        start = _hex(after) if after else ""
        names = await trio.to_thread.run_sync(os.listdir, self._root / objstore.PINS_DIR)
        later = sorted(n for n in names if n > start and ids.is_id(ids.PREFIX + n))
        page = tuple(ids.PREFIX + n for n in later[:limit])
        return proto.PinList(ids=page, more=len(later) > limit)

    # -- touches and pins -------------------------------------------------------------------

    async def touch(self, obj_id: str) -> bool:
        """Restart ``obj_id``'s grace window; False if it is not stored."""
        hexid = _hex(obj_id)
        path = self._root / hexid[:2] / hexid
        async with self._store.lock:
            return await trio.to_thread.run_sync(_touch, path)

    async def pin(self, obj_id: str) -> bool:
        """Pin a stored object; True if it was not pinned. 404 ``not_found`` if not stored."""
        hexid = _hex(obj_id)
        async with self._store.lock:  # no sweep between the presence check and the pin
            return await trio.to_thread.run_sync(_pin, self._root, hexid, obj_id)

    async def unpin(self, obj_id: str) -> bool:
        """True if it was pinned (the object itself stays until a GC finds it garbage)."""
        hexid = _hex(obj_id)
        async with self._store.lock:
            return await trio.to_thread.run_sync(_unpin, self._root, hexid)

    # -- the collector ----------------------------------------------------------------------

    async def gc(self, grace: float, dry_run: bool) -> proto.GcReport:
        if self._gc_running:
            raise oap.OapError("busy", "a GC is already running")
        self._gc_running = True
        try:
            return await self._gc(grace, dry_run)
        finally:
            self._gc_running = False

    async def _gc(self, grace: float, dry_run: bool) -> proto.GcReport:
        began = time.monotonic()
        cutoff = time.time() - grace  # fixed BEFORE the names are read (see module docstring)
        named = await self._named_ids()
        tally = _Tally()
        store = self._store
        reach = Reach(self._root)
        async with store.lock:  # from here every manifest the committer lands adds its reach
            store.gc_reach = reach.keep
        try:
            await trio.to_thread.run_sync(mark, self._root, named, cutoff, reach)
            await self._sweep(tally, named, cutoff, dry_run, reach)
        finally:
            async with store.lock:
                store.gc_reach = None
        store.publish_usage()
        seconds = round(time.monotonic() - began, 3)
        logs.log("gc_done", dry_run=dry_run, grace=grace, seconds=seconds, **attrs.asdict(tally))
        return proto.GcReport(**attrs.asdict(tally), dry_run=dry_run, seconds=seconds)

    async def _sweep(
        self, tally: _Tally, named: set[str], cutoff: float, dry_run: bool, reach: Reach
    ) -> None:
        store = self._store
        for fanout in objstore.FANOUT:
            async with store.lock:
                found = await trio.to_thread.run_sync(
                    _sweep_dir, self._root, fanout, named, cutoff, dry_run, reach
                )
                if found.removed and not dry_run:
                    store.moved(fanout, -found.freed_bytes, -found.removed)
                    store.manifest_gen += 1
            for field in attrs.fields(_Tally):
                setattr(tally, field.name, getattr(tally, field.name) + getattr(found, field.name))


def _list_objects(
    root: Path, start: str, limit: int, index: ManifestIndex, chunks: bool
) -> tuple[list[proto.ObjectInfo], bool]:
    """Up to ``limit`` objects whose hex sorts after ``start``, and whether there are more."""
    rows: list[proto.ObjectInfo] = []
    pins = root / objstore.PINS_DIR
    for fanout in objstore.FANOUT:
        if fanout < start[:2]:
            continue
        for hexid in sorted(os.listdir(root / fanout)):
            if hexid <= start:
                continue
            kind = "chunk" if hexid in index.parts else "raw"
            if kind == "chunk" and not chunks:
                continue
            try:
                st = os.stat(root / fanout / hexid)
            except FileNotFoundError:  # removed meanwhile (a GC or a quarantine)
                continue
            if len(rows) == limit:
                return rows, True
            pinned = os.path.exists(pins / hexid)
            size = st.st_size
            if hexid in index.sizes and kind == "raw":
                kind, size = "manifest", index.sizes[hexid]
            rows.append(proto.ObjectInfo(ids.PREFIX + hexid, size, st.st_mtime, pinned, kind))
    return rows, False


def _touch(path: Path) -> bool:
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _pin(root: Path, hexid: str, obj_id: str) -> bool:
    if not (root / hexid[:2] / hexid).is_file():
        raise oap.OapError("not_found", f"{obj_id} is not stored on this node")
    try:
        fd = os.open(root / objstore.PINS_DIR / hexid, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    objstore.fsync_dir(root / objstore.PINS_DIR)  # a pin survives a crash once answered
    return True


def _unpin(root: Path, hexid: str) -> bool:
    try:
        os.unlink(root / objstore.PINS_DIR / hexid)
    except FileNotFoundError:
        return False
    objstore.fsync_dir(root / objstore.PINS_DIR)
    return True


def _sweep_dir(
    root: Path, fanout: str, named: set[str], cutoff: float, dry_run: bool, reach: Reach
) -> _Tally:
    """One fan-out dir of a GC (the caller holds the committer's lock)."""
    tally = _Tally()
    pins = root / objstore.PINS_DIR
    for entry, st in objstore.stat_entries(root, fanout):
        if os.path.exists(pins / entry.name):
            tally.kept_pinned += 1
        elif entry.name in named:
            tally.kept_named += 1
        elif st.st_mtime >= cutoff:
            tally.kept_young += 1
        elif entry.name in reach.reached:
            tally.kept_reached += 1
        else:
            if not dry_run:
                os.unlink(entry.path)
            tally.removed += 1
            tally.freed_bytes += st.st_size
            tally.removed_chunks += entry.name in reach.orphaned
    if tally.removed and not dry_run:
        objstore.fsync_dir(root / fanout)
    return tally
