"""Which objects this node stores, seen from the object store's directories (no scan per look).

svc-storage installs every object by a rename into one of 256 fan-out dirs
(``services.lib.objstore``), which changes that dir's mtime; a GC's unlink does too. So a look
is 256 ``stat`` calls, and only the dirs whose mtime moved are listed again.

Guarantees: ``poll`` returns the ids (as keys) added and removed since the last poll; the
first poll reports everything stored; a dir that vanished reports its objects removed. Plain
synchronous file code: callers run it in a worker thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipc import ids
from services.lib import objstore

__all__ = ["StoreWatch"]

_SHARDS = tuple(f"{i:02x}" for i in range(256))


class StoreWatch:
    def __init__(self, data_dir: Path) -> None:
        self.root = objstore.store_root(data_dir)
        self._mtimes: dict[str, int] = {}
        self._held: dict[str, set[int]] = {}

    def poll(self) -> tuple[set[int], set[int]]:
        added: set[int] = set()
        removed: set[int] = set()
        for shard in _SHARDS:
            path = self.root / shard
            try:
                mtime = os.stat(path).st_mtime_ns
            except FileNotFoundError:
                mtime = -1
            if self._mtimes.get(shard) == mtime:
                continue
            self._mtimes[shard] = mtime
            now = _list(path) if mtime >= 0 else set()
            before = self._held.get(shard, set())
            added |= now - before
            removed |= before - now
            self._held[shard] = now
        return added, removed

    def held(self) -> set[int]:
        return set().union(*self._held.values()) if self._held else set()


def _list(path: Path) -> set[int]:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return set()
    return {int(n, 16) for n in names if ids.is_id(ids.PREFIX + n)}
