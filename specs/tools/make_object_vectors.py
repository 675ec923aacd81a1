"""Write ``specs/object_vectors.json``: the manifest format of ``specs/objects.md`` pinned.

Written from the spec with msgpack and blake3 alone, never with the project's code (``ipc``), so
the codec is checked against an independent reading of the spec:

    python specs/tools/make_object_vectors.py

Objects are described by a recipe, not their bytes (``pattern(size)``: byte ``i`` is
``(i * 31 + i // 7) % 251``), so a vector of 3 MiB costs a few lines of JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import msgpack

CHUNK = 1 << 20
FANOUT = 30_000


def pattern(size: int) -> bytes:
    return bytes((i * 31 + i // 7) % 251 for i in range(size))


def b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def manifest_bytes(size: int, entries: list[bytes]) -> bytes:
    # The spec's canonical form, written out: a fixmap of 4 in this key order, the smallest
    # msgpack encoding of each integer, each entry a bin of 32 bytes.
    out = bytearray(b"\x84\xa1v\x01\xa4size")
    out += msgpack.packb(size)
    out += b"\xa5chunk" + msgpack.packb(CHUNK)
    out += b"\xa6chunks"
    n = len(entries)
    out += bytes([0x90 | n]) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 65536 else b"")
    for digest in entries:
        assert len(digest) == 32
        out += b"\xc4\x20" + digest
    return bytes(out)


def level(size: int) -> int:
    lv, reach = 0, CHUNK * FANOUT
    while size > reach:
        lv, reach = lv + 1, reach * FANOUT
    return lv


def tree(digests: list[bytes], size: int) -> list[bytes]:
    """Every manifest of the object, children before parents, root last."""
    out: list[bytes] = []

    def make(first: int, part: int) -> bytes:
        lv = level(part)
        if lv == 0:
            entries = digests[first : first + -(-part // CHUNK)]
        else:
            span = CHUNK * FANOUT**lv
            entries = [
                make(first + i * (span // CHUNK), min(span, part - i * span))
                for i in range(-(-part // span))
            ]
        data = manifest_bytes(part, entries)
        out.append(data)
        return blake3.blake3(data).digest()

    make(0, size)
    return out


def object_vector(size: int) -> dict[str, object]:
    data = pattern(size)
    if size <= CHUNK:
        return {"size": size, "kind": "raw", "id": b3(data)}
    chunks = [data[i : i + CHUNK] for i in range(0, size, CHUNK)]
    digests = [blake3.blake3(c).digest() for c in chunks]
    (root,) = tree(digests, size)
    return {
        "size": size,
        "kind": "manifest",
        "id": b3(root),
        "manifest": root.hex(),
        "chunks": [b3(c) for c in chunks],
        "json": {"size": size, "chunk": CHUNK, "level": 0, "chunks": [b3(c) for c in chunks]},
    }


def synthetic_tree() -> dict[str, object]:
    """A tree: one byte past what one manifest may list. The chunk digests are synthetic
    (BLAKE3 of the chunk's index as 8 big-endian bytes); the bytes are never made."""
    size = CHUNK * FANOUT + 1
    n = -(-size // CHUNK)
    digests = [blake3.blake3(i.to_bytes(8, "big")).digest() for i in range(n)]
    manifests = tree(digests, size)
    root = manifests[-1]
    return {
        "why": "level 1: two sub-manifests (30,000 chunks and 1 chunk of 1 byte)",
        "size": size,
        "chunk_digest": "blake3(index as 8 bytes big-endian)",
        "root": root.hex(),
        "id": b3(root),
        "subs": [b3(m) for m in manifests[:-1]],
        "sub_sizes": [CHUNK * FANOUT, 1],
    }


def invalid() -> list[dict[str, object]]:
    d = [blake3.blake3(bytes([i])).digest() for i in range(4)]
    good = manifest_bytes(3 * CHUNK + 5, d)

    def bad(why: str, data: bytes, reason: str = "manifest_invalid") -> dict[str, object]:
        return {"why": why, "bytes": data.hex(), "reason": reason}

    return [
        bad(
            "claims 2^63 bytes (the size is checked before the entries)",
            manifest_bytes(1 << 63, d[:1]),
            "object_too_large",
        ),
        bad("size says 4 chunks, lists 3", manifest_bytes(3 * CHUNK + 5, d[:3])),
        bad("size says 4 chunks, lists 5", manifest_bytes(3 * CHUNK + 5, [*d, d[0]])),
        bad("one chunk or less is stored raw", manifest_bytes(CHUNK, d[:1])),
        bad("size 0", manifest_bytes(0, [])),
        bad(
            "chunk size other than 1 MiB",
            good.replace(b"\xa5chunk\xce\x00\x10\x00\x00", b"\xa5chunk\xcd\x80\x00"),
        ),
        bad("a digest of 31 bytes", good.replace(b"\xc4\x20" + d[3], b"\xc4\x1f" + d[3][:31])),
        bad("bytes after the map", good + b"\x00"),
        bad(
            "size not in its smallest encoding (uint64 for a uint32)",
            good.replace(
                msgpack.packb(3 * CHUNK + 5), b"\xcf" + (3 * CHUNK + 5).to_bytes(8, "big")
            ),
        ),
        bad("cut short", good[:-7]),
        bad("a negative size", manifest_bytes(-5, [])),
    ]


def main() -> None:
    out = {
        "about": "specs/objects.md pinned. Objects are pattern(size): byte i is "
        "(i * 31 + i // 7) % 251. 'manifest' is hex. Regenerate: "
        "specs/tools/make_object_vectors.py",
        "chunk": CHUNK,
        "fanout": FANOUT,
        "magic": manifest_bytes(2, [])[:9].hex(),
        "objects": [
            object_vector(n) for n in (1, 4096, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 4 * CHUNK)
        ],
        "tree": synthetic_tree(),
        "invalid": invalid(),
        "raw_lookalikes": [
            {
                "why": "keys in another order: not a manifest, a raw object",
                "bytes": msgpack.packb(
                    {"size": 3 * CHUNK, "v": 1, "chunk": CHUNK, "chunks": []}
                ).hex(),
            },
            {
                "why": "version 2: not a v1 manifest, a raw object",
                "bytes": msgpack.packb(
                    {"v": 2, "size": 3 * CHUNK, "chunk": CHUNK, "chunks": []}
                ).hex(),
            },
        ],
    }
    path = Path(__file__).resolve().parent.parent / "object_vectors.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
