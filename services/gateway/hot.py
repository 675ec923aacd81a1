"""Small objects this gateway verified lately, kept with the identity of the file they came from.

Why: a GET of a small object costs more in system calls (open, fstat, read, close) and the hash
than in anything else the gateway does for it; a hit costs one ``lstat``.

Guarantees:
- a hit's bytes matched the object's id (BLAKE3, whole) when they were read from the store;
- a hit is served only while the store's file is still that file, unchanged: the same inode,
  size, mtime and ctime. Any write to it, a rename over it, a chmod, its removal (GC) or its
  quarantine makes the next GET a miss, which opens and verifies the file again (and so still
  sees an integrity failure, or a 404);
- bounded: objects up to ``max_object`` bytes, ``limit`` bytes in all, the least recently used
  dropped first; ``limit = 0`` keeps nothing.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from pathlib import Path

from services.lib import objstore

__all__ = ["HotObjects"]

_Identity = tuple[int, int, int, int, int, int]  # (mode, dev, inode, size, mtime, ctime)


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_mode, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HotObjects:
    """The held objects of the store at ``root`` (the paths are its layout: ``objstore``)."""

    def __init__(self, limit: int, max_object: int, root: Path) -> None:
        self.limit = limit
        self.max_object = max_object
        self.root = root
        self.held = 0  # bytes held
        # id -> (bytes, the identity of the file they were read from, its path)
        self._entries: OrderedDict[str, tuple[bytes, _Identity, str]] = OrderedDict()

    def get(self, obj_id: str) -> bytes | None:
        """The bytes of ``obj_id`` if held and its file in the store is still the one they were
        read from; else None (and the entry is dropped)."""
        entry = self._entries.get(obj_id) if self.limit else None
        if entry is None:
            return None
        try:
            same = _identity(os.lstat(entry[2])) == entry[1]
        except OSError:
            same = False
        if not same:
            self._drop(obj_id)
            return None
        self._entries.move_to_end(obj_id)
        return entry[0]

    def put(self, obj_id: str, data: bytes, st: os.stat_result) -> None:
        """Keep ``data``, verified against ``obj_id``, read from the file ``st`` describes
        (a regular file: nothing else is ever held)."""
        if not 0 < len(data) <= min(self.max_object, self.limit) or len(data) != st.st_size:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        self._drop(obj_id)
        self._entries[obj_id] = (data, _identity(st), objstore.object_file(self.root, obj_id))
        self.held += len(data)
        while self.held > self.limit:
            self._drop(next(iter(self._entries)))

    def _drop(self, obj_id: str) -> None:
        entry = self._entries.pop(obj_id, None)
        if entry is not None:
            self.held -= len(entry[0])
