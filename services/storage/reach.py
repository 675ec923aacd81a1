"""What kept manifests reach: the GC's mark phase for chunked objects (``specs/objects.md``).

A chunk or sub-manifest is kept while a manifest that is kept (pinned, named or young) lists
it, directly or through sub-manifests. Why this is race-free with commits (the rest of the
argument is the GC's, ``specs/storage-protocol.md``): the GC installs its ``Reach`` on the
store (``Store.gc_reach``) *before* the mark phase lists the store, and from then on every
manifest the committer creates or acknowledges again is added before its commit is answered;
so a manifest either is seen by the listing or adds itself, and a chunk it lists that was
already here is never swept under it.

Plain sync file code: it runs in worker threads (the committer's, and the GC's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import attrs

from ipc import manifest
from services.lib import objstore

__all__ = ["ManifestIndex", "Reach", "is_manifest_file", "manifest_index", "mark"]

_LONGEST = 64 + manifest.FANOUT * 34  # no manifest is longer (ipc.manifest)


def read_manifest(root: Path, hexid: str) -> manifest.Manifest | None:
    """The manifest stored under ``hexid``; None when that is no (valid) manifest or is gone."""
    try:
        with open(root / hexid[:2] / hexid, "rb") as f:
            if not manifest.is_manifest(f.read(len(manifest.MAGIC))):
                return None
            f.seek(0)
            data = f.read(_LONGEST + 1)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        return manifest.decode(data, root=False)
    except manifest.ManifestError:
        return None


def is_manifest_file(root: Path, obj_id: str, size: int) -> bool:
    """Whether the stored object ``obj_id`` of ``size`` bytes is a manifest (one small read)."""
    if not len(manifest.MAGIC) <= size <= _LONGEST:
        return False
    try:
        with open(objstore.object_path(root, obj_id), "rb") as f:
            return manifest.is_manifest(f.read(len(manifest.MAGIC)))
    except FileNotFoundError:
        return False


@attrs.frozen
class ManifestIndex:
    """The manifests in the store (hex id -> the object's size) and their parts (chunks and
    sub-manifests, hex ids): what a listing of objects shows and hides."""

    sizes: dict[str, int]
    parts: frozenset[str]


def could_be_manifests(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(hex id, stat) of every stored object small enough to be a manifest (a whole chunk or a
    large raw object never is)."""
    for fanout in objstore.FANOUT:
        for entry, st in objstore.stat_entries(root, fanout):
            if len(manifest.MAGIC) <= st.st_size <= _LONGEST:
                yield entry.name, st


def manifest_index(root: Path) -> ManifestIndex:
    """Every manifest of the store read once (O(objects) stats, one read per small object)."""
    sizes: dict[str, int] = {}
    parts: set[str] = set()
    for hexid, _st in could_be_manifests(root):
        found = read_manifest(root, hexid)
        if found is not None:
            sizes[hexid] = found.size
            parts.update(d.hex() for d in found.entries)
    return ManifestIndex(sizes, frozenset(parts))


class Reach:
    """The objects kept manifests reach (``reached``, hex ids) and, to count what a GC frees,
    the chunks of manifests it found unkept (``orphaned``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reached: set[str] = set()
        self.orphaned: set[str] = set()

    def keep(self, hexid: str) -> None:
        """``hexid`` is kept: if it is a manifest, everything it lists is reached (transitively:
        a tree's sub-manifests are read too)."""
        stack = [hexid]
        while stack:
            found = read_manifest(self.root, stack.pop())
            if found is None:
                continue
            for digest in found.entries:
                entry = digest.hex()
                if entry not in self.reached:
                    self.reached.add(entry)
                    if found.level > 0:
                        stack.append(entry)

    def drop(self, hexid: str) -> None:
        """``hexid`` is not kept: its entries are counted as chunks freed if not reached."""
        found = read_manifest(self.root, hexid)
        if found is not None:
            self.orphaned.update(d.hex() for d in found.entries)


def mark(root: Path, named: set[str], cutoff: float, reach: Reach) -> None:
    """The mark phase: every manifest in the store is kept (its reach marked) or dropped, by
    the GC's own rule (pinned, named, or modified at or after ``cutoff``)."""
    pins = root / objstore.PINS_DIR
    for hexid, st in could_be_manifests(root):
        if hexid in named or st.st_mtime >= cutoff or os.path.exists(pins / hexid):
            reach.keep(hexid)
        else:
            reach.drop(hexid)
