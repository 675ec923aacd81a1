"""Objects larger than one chunk (``specs/objects.md``): uploads cut into chunks under a
manifest, and reads chunk by chunk.

Guarantees:

- an upload's object becomes visible only once its root manifest is committed, and every chunk
  is committed (so made young again, see the GC) just before it: a crash earlier leaves only
  chunks nothing names;
- a read verifies each chunk (its BLAKE3 against the manifest's digest, by opening it as an
  object) before any of its bytes is served, reads only the chunks a range covers, and holds at
  most one chunk in memory; a chunk this node lacks is fetched through svc-overlay first;
- a bad manifest, a chunk of the wrong length or a chunk that is a manifest is
  ``GatewayError(manifest_invalid)``; before the answer has begun (``prepare``) that is a 4xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ipc import ids, manifest
from services.gateway.backend import Stored
from services.gateway.errors import GatewayError

__all__ = ["ChunkSource", "ChunkedObject", "check_manifest", "invalid"]

_COMMITS_IN_FLIGHT = 16  # chunk commits sent together (the group commit syncs them at once)
FETCH_AHEAD = 16  # chunks a read through peers fetches at once, at most (3 paced providers
# each keep ~5 busy: 8 left one idle at times, 2.30x one provider vs 2.52x with 16)


def invalid(err: manifest.ManifestError) -> GatewayError:
    """A codec refusal as the gateway's answer (``manifest_invalid`` 422, ``object_too_large``)."""
    return GatewayError(err.reason, err.detail)


def check_manifest(data: bytes, max_size: int) -> None:
    """A body of at most one chunk that begins like a manifest must be a valid one (a client
    may build an object from chunks it uploaded itself); anything else is refused."""
    if manifest.is_manifest(data):
        try:
            manifest.decode(data, max_size=max_size)
        except manifest.ManifestError as err:
            raise invalid(err) from None


class ChunkSource(Protocol):
    """What reading a chunked object needs from the data plane."""

    async def load(self, obj_id: str, *, fetch: bool = True) -> bytes:
        """The verified bytes of ``obj_id`` (at most one chunk), fetched through a peer if
        this node lacks it (and ``fetch``); ``GatewayError`` (not_found, ...) otherwise."""

    async def fetch(self, obj_ids: list[str], first: int = 0, group: str | None = None) -> None:
        """Fetch these ids through peers at once (committed here when it returns); the k-th
        starts at provider ``first + k`` (chunks spread evenly over the providers); ``group``:
        the object they are parts of (a provider that sent a bad one is not asked again)."""

    async def sizes(self, obj_ids: list[str]) -> list[tuple[int, bytes] | None]:
        """Each id's stored size and, when under one chunk, its first bytes (enough to tell a
        manifest); None: not here. No verification."""

    @property
    def can_fetch(self) -> bool:
        """Whether a missing chunk can be fetched from a peer."""

    async def reserve(self, size: int, objects: int, what: str) -> None:
        """Hold ``size`` bytes and ``objects`` objects of the store's free space for a fetch
        (507 ``insufficient_storage`` if they do not fit beside what is held already)."""

    def release(self, size: int, objects: int) -> None:
        """Give back what ``reserve`` held."""


class ChunkedObject:
    """A manifest object opened for reading (the gateway's ``StoredObject``)."""

    head = b""  # nothing is read before the range is known

    def __init__(self, obj_id: str, root: manifest.Manifest, source: ChunkSource) -> None:
        self.id = obj_id
        self.size = root.size
        self.manifest = root
        self._source = source
        self._subs: dict[str, manifest.Manifest] = {}  # sub-manifests of a tree, by id
        self._chunk: tuple[str, bytes] | None = None  # the chunk last read (id, bytes)
        self._ahead = 1  # chunks fetched together from peers: doubles up to FETCH_AHEAD
        self._nursery: trio.Nursery | None = None  # where fetches ahead run (``use``)
        self._fetching: dict[str, trio.Event] = {}  # chunk id -> set once fetched (or failed)
        self._next: tuple[str, trio.Event, list[bytes]] | None = None  # the chunk read ahead
        self._end = root.size  # where the range being served ends (``prepare``)
        self._held: tuple[int, int] = (0, 0)  # (bytes, objects) reserved for chunks to fetch

    def use(self, nursery: trio.Nursery) -> None:
        """Fetch ahead in ``nursery`` (the request's): a sliding window of chunks past the one
        being read (the first alone, for the first byte; then doubling up to ``FETCH_AHEAD``),
        each fetched as soon as a place frees, so a slow provider holds up only its own
        chunks. Without it (a reader outside a request), each chunk is fetched when read."""
        self._nursery = nursery

    async def prepare(self, start: int, end: int) -> None:
        """Before the answer begins: for a one-level manifest, every chunk the range covers is
        here at its right length, or fetchable (else a 4xx/404 now, not a cut body later); the
        first one is fetched now if need be (a peer's refusal is then still a status)."""
        root = self.manifest
        self._end = end
        if root.level > 0 or start >= end:
            return
        wanted = list(root.covering(start, end))
        sizes = await self._source.sizes([root.entry_id(i) for i in wanted])
        await self._check_room([i for i, found in zip(wanted, sizes, strict=True) if not found])
        for index, found in zip(wanted, sizes, strict=True):
            if found is None:
                if not self._source.can_fetch:
                    raise GatewayError(
                        "not_found", f"chunk {index} of {self.id} is not on this node"
                    )
                if index == wanted[0]:  # needed first anyway: a failure is still an answer
                    await self._leaf(root, index, patient=False)
                continue
            size, head = found
            if size != root.entry_size(index):
                raise GatewayError(
                    "manifest_invalid",
                    f"chunk {index} of {self.id} is {size} bytes, not {root.entry_size(index)}",
                )
            if manifest.is_manifest(head):
                raise GatewayError("manifest_invalid", f"chunk {index} of {self.id} is a manifest")

    async def _check_room(self, missing: list[int]) -> None:
        """What must come from peers is reserved against the store's free space first (507
        before a byte is fetched; held until this read ends)."""
        if not missing or not self._source.can_fetch or self._held != (0, 0):
            return
        need = sum(self.manifest.entry_size(i) for i in missing)
        await self._source.reserve(need, len(missing), f"{self.id} ({len(missing)} chunks)")
        self._held = (need, len(missing))

    async def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset``, never past the end of the chunk holding it."""
        if offset >= self.size or n <= 0:
            return b""
        return await self._read_leaf(offset, n)

    async def _read_leaf(self, offset: int, n: int) -> bytes:
        node, base = self.manifest, 0
        while node.level > 0:
            index = (offset - base) // node.span
            child = await self._sub(node, index)
            base += index * node.span
            node = child
        index = (offset - base) // manifest.CHUNK
        chunk = await self._leaf(node, index)
        more = base + (index + 1) * manifest.CHUNK < self._end  # the range goes on
        if self._nursery is not None and more and index + 1 < len(node.entries):
            self._read_ahead(node.entry_id(index + 1))
        at = offset - base - index * manifest.CHUNK
        return chunk[at : at + n]

    async def _sub(self, parent: manifest.Manifest, index: int) -> manifest.Manifest:
        sub_id = parent.entry_id(index)
        known = self._subs.get(sub_id)
        if known is not None:
            return known
        data = await self._source.load(sub_id)
        try:
            sub = manifest.decode(data, root=False)
        except manifest.ManifestError as err:
            raise invalid(err) from None
        if sub.size != parent.entry_size(index) or sub.level >= parent.level:
            raise GatewayError(
                "manifest_invalid", f"sub-manifest {index} of {self.id} does not cover its span"
            )
        if len(self._subs) >= 16:  # a tree is at most a few levels deep: a small cache
            self._subs.clear()
        self._subs[sub_id] = sub
        return sub

    async def _leaf(self, node: manifest.Manifest, index: int, *, patient: bool = True) -> bytes:
        """Chunk ``index`` of ``node``, verified; ``patient``: a stream under way waits out a
        provider that is only unavailable (before the answer: 503 at once, Retry-After)."""
        chunk_id = node.entry_id(index)
        if self._chunk is not None and self._chunk[0] == chunk_id:
            return self._chunk[1]
        self._chunk = None
        try:
            data = await self._local(chunk_id)
        except GatewayError as err:
            if err.reason != "not_found" or not self._source.can_fetch:
                raise
            if self._nursery is not None:  # else ``load`` fetches this one alone
                self._ahead_of(node, index)
                await self._fetching[chunk_id].wait()
                del self._fetching[chunk_id]
                self._ahead = min(FETCH_AHEAD, self._ahead * 2)  # the first chunk came alone
            load = self._load_retrying if patient else self._source.load
            data = await load(chunk_id)
        want = node.entry_size(index)
        if len(data) != want:
            raise GatewayError(
                "manifest_invalid", f"chunk {index} of {self.id} is {len(data)} bytes, not {want}"
            )
        if manifest.is_manifest(data):
            raise GatewayError("manifest_invalid", f"chunk {index} of {self.id} is a manifest")
        self._chunk = (chunk_id, data)
        return data

    async def _local(self, chunk_id: str) -> bytes:
        """A chunk held here (read ahead, or read now); ``not_found`` if it is not."""
        ahead, self._next = self._next, None
        if ahead is not None and ahead[0] == chunk_id:
            await ahead[1].wait()
            if ahead[2]:
                return ahead[2][0]
        return await self._source.load(chunk_id, fetch=False)

    def _read_ahead(self, chunk_id: str) -> None:
        """Read (and verify) the next chunk in a worker thread while this one is sent."""
        assert self._nursery is not None
        if self._next is not None and self._next[0] == chunk_id:
            return  # under way
        done, box = trio.Event(), list[bytes]()
        self._next = (chunk_id, done, box)

        async def read() -> None:
            try:
                box.append(await self._source.load(chunk_id, fetch=False))
            except GatewayError:
                pass  # read again (or fetched) when it is needed: then it is answered
            finally:
                done.set()

        self._nursery.start_soon(read)

    async def _load_retrying(self, chunk_id: str) -> bytes:
        """A chunk from peers, asked again while they are only unavailable (a provider's
        overlay restarting, say) or this node's overlay is busy: a stream that has begun is
        not cut for a short outage. The request's own idle deadline still bounds it."""
        pause = 0.05
        while True:
            try:
                return await self._source.load(chunk_id)
            except GatewayError as err:
                if err.reason not in ("unavailable", "busy"):
                    raise
            await trio.sleep(pause)
            pause = min(1.0, pause * 2)

    def _ahead_of(self, node: manifest.Manifest, index: int) -> None:
        """Start fetching chunk ``index`` and the next ones up to the window (each once)."""
        assert self._nursery is not None
        for i in range(index, min(len(node.entries), index + self._ahead)):
            chunk_id = node.entry_id(i)
            if chunk_id not in self._fetching:
                self._fetching[chunk_id] = done = trio.Event()
                self._nursery.start_soon(self._fetch_one, chunk_id, i, done)

    async def _fetch_one(self, chunk_id: str, index: int, done: trio.Event) -> None:
        try:
            if (await self._source.sizes([chunk_id]))[0] is None:  # held already: not again
                await self._source.fetch([chunk_id], index, self.id)
        finally:
            done.set()

    async def aclose(self) -> None:
        self._chunk = None
        if self._held != (0, 0):
            self._source.release(*self._held)
            self._held = (0, 0)


CommitPiece = Callable[[str, int, str], Awaitable[Stored]]
PutBytes = Callable[[bytes], Awaitable[Stored]]


async def commit_chunked(
    pieces: list[tuple[str, int, str]], commit: CommitPiece, put: PutBytes
) -> Stored:
    """Commit finished temp chunks ``(id, size, tmp)`` (several in flight), then the manifests,
    children first and the root last; the root's ``Stored`` with the object's size."""
    size = sum(p[1] for p in pieces)
    limiter = trio.CapacityLimiter(_COMMITS_IN_FLIGHT)

    async def one(piece: tuple[str, int, str]) -> None:
        async with limiter:
            await commit(*piece)

    async with trio.open_nursery() as nursery:
        for piece in pieces:
            nursery.start_soon(one, piece)
    digests = [bytes.fromhex(ids.parse_id(p[0])) for p in pieces]
    stored: Stored | None = None
    for data in manifest.build(digests, size):
        stored = await put(data)
    assert stored is not None
    return Stored(stored.id, size, stored.created)
