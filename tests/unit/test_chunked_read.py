"""Reading a chunked object (``services.gateway.chunked``) from a source that lies: bytes under
an id that are not that id's (what a store could never hold, what a reader must survive anyway).
A tree whose sub-manifest loops back to the root, or whose sizes do not add up, is refused with
``manifest_invalid`` before a byte of it is served; nothing the claim names is allocated."""

from __future__ import annotations

import blake3
import pytest

from ipc import ids, manifest
from services.gateway.chunked import ChunkedObject
from services.gateway.errors import GatewayError

MiB = manifest.CHUNK


class LyingSource:
    """Serves whatever ``objects`` maps an id to, unverified; counts loads."""

    can_fetch = False

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.loads: list[str] = []

    async def load(self, obj_id: str, *, fetch: bool = True) -> bytes:
        self.loads.append(obj_id)
        if obj_id not in self.objects:
            raise GatewayError("not_found", obj_id)
        return self.objects[obj_id]

    async def fetch(self, obj_ids: list[str]) -> None:
        raise AssertionError("nothing is fetched without peers")

    async def sizes(self, obj_ids: list[str]) -> list[tuple[int, bytes] | None]:
        return [
            (len(self.objects[i]), self.objects[i][:9]) if i in self.objects else None
            for i in obj_ids
        ]

    async def reserve(self, size: int, objects: int, what: str) -> None:
        pass

    def release(self, size: int, objects: int) -> None:
        pass


def digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


async def test_a_tree_that_loops_back_to_its_root_is_refused() -> None:
    size = MiB * manifest.FANOUT + 1  # level 1: two sub-manifests
    fake_sub = b"\x00" * 32
    root = manifest.Manifest(size, (fake_sub, fake_sub))
    raw = root.encode()
    # the lie: the sub-manifest's id holds the root itself (a cycle)
    source = LyingSource({ids.format_id(fake_sub): raw})
    obj = ChunkedObject("b3:" + "ab" * 32, manifest.decode(raw), source)
    with pytest.raises(GatewayError) as info:
        await obj.read(0, 1)
    assert info.value.reason == "manifest_invalid"
    assert source.loads == [ids.format_id(fake_sub)]  # one look, no walk


async def test_a_chunk_of_the_wrong_length_is_refused_and_ranges_read_only_their_chunks() -> None:
    chunks = [bytes([i]) * MiB for i in range(3)] + [b"tail"]
    listing = manifest.Manifest(3 * MiB + 4, tuple(digest(c) for c in chunks))
    objects = {ids.format_id(digest(c)): c for c in chunks}
    source = LyingSource(objects)
    obj = ChunkedObject("b3:" + "cd" * 32, listing, source)
    await obj.prepare(2 * MiB + 5, 2 * MiB + 6)
    assert await obj.read(2 * MiB + 5, 1) == b"\x02"
    assert await obj.read(3 * MiB + 1, 10) == b"ail"
    assert len(source.loads) == 2  # chunks 2 and 3, nothing else

    objects[ids.format_id(digest(chunks[1]))] = b"short"  # chunk 1 lies about its length
    with pytest.raises(GatewayError) as info:
        await obj.prepare(MiB, MiB + 1)
    assert info.value.reason == "manifest_invalid" and "5 bytes" in info.value.detail
    with pytest.raises(GatewayError):
        await obj.read(MiB, 1)


async def test_a_missing_chunk_without_peers_is_not_found_before_the_answer() -> None:
    listing = manifest.Manifest(2 * MiB, (digest(b"a"), digest(b"b")))
    obj = ChunkedObject("b3:" + "ef" * 32, listing, LyingSource({}))
    with pytest.raises(GatewayError) as info:
        await obj.prepare(0, 2 * MiB)
    assert info.value.reason == "not_found"
