"""Manifests: how an object larger than one chunk is named and checked (``specs/objects.md``).

An object of at most ``CHUNK`` bytes is stored whole and its id is the BLAKE3 of its bytes. A
larger one is cut into ``CHUNK``-byte chunks (the last may be shorter), each an object of its
own, plus a manifest listing their digests; the object's id is the id of the manifest's bytes.
A manifest never lists more than ``FANOUT`` entries (so it stays under 1 MiB): past that, its
entries are sub-manifests, a tree whose shape follows from the size alone (``level``).

Guarantees of this module (pure functions, no I/O):

- ``encode`` is the only encoding: ``decode`` accepts exactly the bytes ``encode`` makes (keys in
  order, smallest integers, 32-byte bins), so one object has one id on every node;
- ``decode`` refuses, with ``ManifestError.reason`` (``manifest_invalid`` or
  ``object_too_large``), before allocating anything the claim would cost: msgpack limits bound
  the parse, the size is capped (``MAX_SIZE``, and the caller's own cap), the entry count must be
  the one the size implies;
- ``is_manifest`` tells a manifest from a raw object by its first bytes (``MAGIC``): a stored
  object beginning with them is a manifest, and one that then does not decode is refused, never
  served as raw bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

import attrs
import blake3
import msgpack

from ipc import ids

__all__ = [
    "CHUNK",
    "FANOUT",
    "MAGIC",
    "MAX_SIZE",
    "Manifest",
    "ManifestError",
    "StreamId",
    "build",
    "decode",
    "is_manifest",
    "level_of",
    "object_id",
]

VERSION: Final = 1
CHUNK: Final = 1 << 20  # bytes per chunk (v1: fixed)
FANOUT: Final = 30_000  # entries per manifest at most: 30,000 x 34 bytes + 41 < 1 MiB
MAX_SIZE: Final = 1 << 50  # the largest object a manifest may describe (1 PiB)
# fixmap(4) "v" 1 "size": the first bytes of every manifest (key order is part of the encoding)
MAGIC: Final = b"\x84\xa1v\x01\xa4size"
_MAX_BYTES: Final = 64 + FANOUT * 34  # the longest valid manifest


class ManifestError(ValueError):
    """Bytes that claim to be a manifest and are not a valid one. ``reason`` is stable:
    ``manifest_invalid`` (malformed, not canonical, inconsistent) or ``object_too_large``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _invalid(detail: str) -> ManifestError:
    return ManifestError("manifest_invalid", detail)


def level_of(size: int) -> int:
    """The level of a manifest of ``size`` bytes: 0 lists chunks; L > 0 lists sub-manifests
    each covering ``CHUNK * FANOUT**L`` bytes (the last one the rest)."""
    level, reach = 0, CHUNK * FANOUT
    while size > reach:
        level, reach = level + 1, reach * FANOUT
    return level


@attrs.frozen
class Manifest:
    """One decoded manifest: ``size`` bytes of object, ``entries`` digests of chunks (level 0)
    or of sub-manifests (level > 0)."""

    size: int
    entries: tuple[bytes, ...]
    chunk: int = CHUNK

    @property
    def level(self) -> int:
        return level_of(self.size)

    @property
    def span(self) -> int:
        """Bytes of object each entry covers (the last entry: what remains)."""
        return int(self.chunk * FANOUT**self.level)

    def entry_size(self, index: int) -> int:
        """Bytes of object entry ``index`` covers."""
        return min(self.span, self.size - index * self.span)

    def entry_id(self, index: int) -> str:
        return ids.format_id(self.entries[index])

    def covering(self, start: int, end: int) -> Iterator[int]:
        """Indexes of the entries that hold bytes ``[start, end)`` of this manifest's part."""
        if start >= end:
            return iter(())
        return iter(range(start // self.span, (end - 1) // self.span + 1))

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {"v": VERSION, "size": self.size, "chunk": self.chunk, "chunks": list(self.entries)},
            use_bin_type=True,
        )
        return packed

    def as_json(self) -> dict[str, object]:
        """``GET /o/{id}?manifest``: ``{"size", "chunk", "chunks": ["b3:..."], "level"}``."""
        return {
            "size": self.size,
            "chunk": self.chunk,
            "level": self.level,
            "chunks": [ids.format_id(d) for d in self.entries],
        }


def is_manifest(data: bytes | bytearray | memoryview) -> bool:
    """Whether stored bytes are a manifest (they begin with ``MAGIC``; see the module doc)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def decode(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_SIZE, root: bool = True
) -> Manifest:
    """The manifest ``data`` encodes; ``ManifestError`` unless it is exactly ``encode``'s bytes
    of a consistent manifest of at most ``max_size`` bytes. ``root``: the object's own manifest,
    which must describe more than one chunk (a smaller object is stored raw); a sub-manifest of a
    tree may be smaller."""
    raw = bytes(data)
    if not is_manifest(raw):
        raise _invalid("does not begin like a manifest")
    if len(raw) > _MAX_BYTES:
        raise _invalid(f"{len(raw)} bytes is longer than any manifest")
    try:
        doc = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            max_bin_len=32,
            max_str_len=8,
            max_array_len=FANOUT,
            max_map_len=4,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _invalid(f"not msgpack of a manifest ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or list(doc) != ["v", "size", "chunk", "chunks"]:
        raise _invalid("a manifest is a map of v, size, chunk, chunks in this order")
    size, chunk, entries = doc["size"], doc["chunk"], doc["chunks"]
    if type(size) is not int or size < 1:
        raise _invalid("size must be a positive integer")
    if size > MAX_SIZE or size > max_size:
        raise ManifestError(
            "object_too_large", f"the manifest claims {size} bytes, over {min(max_size, MAX_SIZE)}"
        )
    if chunk != CHUNK or type(chunk) is not int:
        raise _invalid(f"chunk must be {CHUNK}")
    if root and size <= CHUNK:
        raise _invalid("an object of one chunk or less is stored raw, not as a manifest")
    if not isinstance(entries, list) or not all(type(e) is bytes and len(e) == 32 for e in entries):
        raise _invalid("chunks must be a list of 32-byte digests")
    found = Manifest(size=size, entries=tuple(entries))
    want = -(-size // found.span)
    if len(entries) != want:
        raise _invalid(f"{size} bytes (level {found.level}) need {want} entries: {len(entries)}")
    if found.encode() != raw:
        raise _invalid("not the canonical encoding")
    return found


def build(digests: Sequence[bytes], size: int) -> list[bytes]:
    """The manifests of an object of ``size`` bytes whose chunks hash to ``digests``: every
    sub-manifest first, children before parents, the root last (its id is the object's)."""
    if size <= CHUNK or len(digests) != -(-size // CHUNK):
        raise ValueError(f"{size} bytes are not {len(digests)} chunks of a chunked object")
    out: list[bytes] = []

    def make(first: int, part: int) -> bytes:
        manifest_level = level_of(part)
        if manifest_level == 0:
            entries = tuple(digests[first : first + -(-part // CHUNK)])
        else:
            span = CHUNK * FANOUT**manifest_level
            entries = tuple(
                make(first + i * (span // CHUNK), min(span, part - i * span))
                for i in range(-(-part // span))
            )
        data = Manifest(size=part, entries=entries).encode()
        out.append(data)
        return blake3.blake3(data).digest()

    make(0, size)
    return out


def object_id(data: bytes | bytearray | memoryview) -> str:
    """The id of ``data`` as an object: its own BLAKE3 up to ``CHUNK`` bytes, else its root
    manifest's (the same on every node)."""
    hasher = StreamId()
    hasher.update(data)
    return hasher.id()


class StreamId:
    """The object id of bytes that arrive in pieces, in one pass and O(chunks) memory: each
    chunk is hashed as it completes (an object of one chunk is its own id; a larger one is its
    root manifest's). What a client checks a download against, whatever the object's kind."""

    def __init__(self) -> None:
        self.size = 0
        self._digests: list[bytes] = []
        self._hasher = blake3.blake3()
        self._filled = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        while view:
            take = min(len(view), CHUNK - self._filled)
            self._hasher.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == CHUNK and view:
                self._digests.append(self._hasher.digest())
                self._hasher, self._filled = blake3.blake3(), 0

    def id(self) -> str:
        digests = [*self._digests, self._hasher.digest()]
        if len(digests) == 1:
            return ids.format_id(digests[0])
        return ids.id_of(build(digests, self.size)[-1])
