"""The real ``Backend``: the store on disk (or tmpfs) plus svc-storage and svc-index commands.

Reads go straight to the store under the node's data dir: the whole digest is verified in this
process before a byte is served (no service hop, and reads keep working while svc-storage
restarts). A single-shot body goes to svc-storage in one command; a streamed upload goes into a
temp object here that svc-storage commits; either is acknowledged only once durable. Names go to
svc-index. An object this node lacks is fetched by svc-overlay from a peer (when the profile runs
one), verified and committed here, then served like a local one. The store's sync API runs in
worker threads (``trio.to_thread``), except for reads of
objects up to 64 KiB, which cost less than the thread hop; those are also kept, verified, in a
bounded memory cache served while their file is unchanged (``services.gateway.hot``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from ipc import manifest, oap
from ipc.commands import CommandClient
from ipc.proto import index, mailbox, overlay, storage
from ipc.proto.codec import Request, call
from ipc.proto.storage import UsageReply
from kernel import logs
from services.gateway.backend import FetchWatch, NameRecord, Stored, StoredObject, Upload
from services.gateway.chunked import ChunkedObject, check_manifest, commit_chunked, invalid
from services.gateway.errors import GatewayError, from_oap
from services.gateway.exchange import ClientGone
from services.gateway.hot import HotObjects
from services.lib import objstore

__all__ = ["INDEX", "OVERLAY", "STORAGE", "StoreBackend"]

STORAGE = "svc-storage"
OVERLAY = "svc-overlay"
INLINE_READ = 65536  # objects up to this size are opened and verified on the trio thread
INDEX = "svc-index"
FETCH_POLL_S = 1.0  # a fetch through a peer reports its progress at least this often
MAILBOX = "svc-mailbox"
R = TypeVar("R")
T = TypeVar("T")


# File I/O threads of this process. Few on purpose: each holds the GIL while it runs Python,
# and with trio's default of 40 they starve the event loop (every request, refusals included,
# then waits for the GIL); a small pool keeps the loop prompt and the disk just as busy.
IO_THREADS = 4
_IO_LIMIT: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("gateway_io")


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    try:
        limiter = _IO_LIMIT.get()
    except LookupError:
        limiter = trio.CapacityLimiter(IO_THREADS)
        _IO_LIMIT.set(limiter)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


def _store_error(exc: Exception, obj_id: str = "") -> GatewayError:
    if isinstance(exc, objstore.NotFound):
        return GatewayError("not_found", f"no object {obj_id}")
    if isinstance(exc, objstore.IntegrityError):
        return GatewayError("integrity_failure", f"{obj_id} does not match its id")
    if isinstance(exc, objstore.ObjectTooLarge):
        return GatewayError("object_too_large", str(exc))
    if isinstance(exc, FileNotFoundError):  # no objects/tmp yet: svc-storage has not set it up
        return GatewayError("unavailable", "the store is not ready", retry_after=1)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GatewayError("insufficient_storage", "the disk is full")
    return GatewayError("internal", f"store: {type(exc).__name__}")


class _VerifiedObject:
    def __init__(self, obj: objstore.VerifiedObject, head: bytes) -> None:
        self._obj = obj
        self.size: int = obj.size
        self.head = head

    async def read(self, offset: int, n: int) -> bytes:
        if self.size <= objstore.READ_CHUNK:
            # objstore guarantee: objects this small were read whole to verify and are served
            # from that copy, so this is a slice, not file I/O.
            return self._obj.read(offset, n)
        return await _in_thread(self._obj.read, offset, n)

    async def prepare(self, start: int, end: int) -> None:
        """Verified whole when opened: nothing more to check."""

    async def aclose(self) -> None:
        self._obj.close()


class _ChunkingUpload:
    """A streamed upload: one temp object while it fits one chunk (then it is a raw object, as
    it always was); past that, cut into chunk temp objects as it arrives and committed under a
    manifest (``chunked.commit_chunked``). Holds no more than the piece being written."""

    def __init__(self, backend: StoreBackend, max_size: int) -> None:
        self._backend = backend
        self._max = max_size
        self._size = 0
        self._head = b""  # the first bytes (a raw upload that begins like a manifest is checked)
        self._temp: objstore.TempObject | None = None
        self._done: list[tuple[str, int, str]] = []  # finished chunk temps: (id, size, tmp)

    async def write(self, data: bytes) -> None:
        if self._size + len(data) > self._max:
            await self.abort()
            raise GatewayError("object_too_large", f"object exceeds the {self._max}-byte cap")
        if len(self._head) < len(manifest.MAGIC):
            self._head += data[: len(manifest.MAGIC) - len(self._head)]
        view = memoryview(data)
        try:
            while view:
                if self._temp is not None and self._temp.size == manifest.CHUNK:
                    self._done.append(await _in_thread(self._temp.finish))  # more is coming
                    self._temp = None
                if self._temp is None:
                    self._temp = await _in_thread(self._backend.new_temp, manifest.CHUNK)
                room = manifest.CHUNK - self._temp.size
                part, view = view[:room], view[room:]
                await _in_thread(self._temp.write, part)
                self._size += len(part)
        except (objstore.StoreError, OSError) as exc:  # OSError: a full disk (ENOSPC) above all
            raise _store_error(exc) from None

    async def commit(self) -> Stored:
        if self._temp is None:
            raise GatewayError("empty_body", "PUT /o needs the object as its body")
        try:
            last = await _in_thread(self._temp.finish)
        except (objstore.StoreError, OSError) as exc:
            raise _store_error(exc) from None
        self._temp = None
        backend = self._backend
        backend.forget_usage()
        if not self._done:  # one chunk or less: a raw object
            if manifest.is_manifest(self._head):
                data = await _in_thread(objstore.temp_path(backend.root, last[2]).read_bytes)
                check_manifest(data, self._max)
            return await backend.commit_temp(*last)
        self._done.append(last)
        return await commit_chunked(self._done, backend.commit_temp, backend.put_small)

    async def abort(self) -> None:
        with trio.CancelScope(shield=True):
            if self._temp is not None:
                temp, self._temp = self._temp, None
                await _in_thread(temp.abort)
            done, self._done = self._done, []
            for _, _, tmp in done:  # a committed one was moved out of tmp: a no-op
                await _in_thread(objstore.remove_temp, self._backend.root, tmp)


USAGE_TTL = 0.5  # seconds: how stale the early quota check's view of the store may be


class StoreBackend:
    """The node's data plane as the gateway sees it. Create with ``StoreBackend.open``."""

    def __init__(
        self,
        root: Path,
        storage: CommandClient,
        index: CommandClient,
        overlay_client: CommandClient | None = None,
        mailbox_client: CommandClient | None = None,
    ) -> None:
        self._mailbox = mailbox_client  # None: the node runs no svc-mailbox
        self._root = self.root = root
        self.chunk_reads = 0  # chunks read (and verified) to serve manifest objects
        self.max_object_size = manifest.MAX_SIZE  # a manifest claiming more is 413 (settings)
        # small objects verified lately (``hot``): none until the gateway sets its ``limit``
        # from its settings (``hot_cache``)
        self.hot = HotObjects(0, INLINE_READ, root)
        self.on_chunk_read: Callable[[], None] | None = None  # e.g. a metric's inc
        self._storage = storage
        self._index = index
        self._overlay = overlay_client  # None: the node runs no svc-overlay (no peers to ask)
        self._usage: tuple[float, UsageReply] | None = None  # (when read, reply)
        # (bytes, objects) held for chunked objects being fetched from peers (``reserve``)
        self._reserved: tuple[int, int] = (0, 0)

    async def free_space(self, *, fresh: bool = False) -> tuple[int, int] | None:
        """(bytes, objects) svc-storage can still take, read at most once per
        ``USAGE_TTL`` seconds (``fresh``: now); None if it did not answer (the PUT goes on:
        svc-storage refuses it itself if it does not fit)."""
        now = trio.current_time()
        if fresh or self._usage is None or now - self._usage[0] > USAGE_TTL:
            try:
                self._usage = (now, await self.storage_call(storage.Usage()))
            except GatewayError:
                return None
        usage = self._usage[1]
        return max(0, usage.max_bytes - usage.bytes), max(0, usage.max_objects - usage.objects)

    async def reserve(self, size: int, objects: int, what: str) -> None:
        free = await self.free_space(fresh=True)
        if free is None:
            return  # unknown: svc-storage refuses each chunk itself if it does not fit
        room, slots = free[0] - self._reserved[0], free[1] - self._reserved[1]
        if size > room or objects > slots:
            raise GatewayError(
                "insufficient_storage",
                f"{what} needs {size} bytes from peers; the store can take {max(0, room)} "
                f"more bytes and {max(0, slots)} objects beside the fetches under way",
            )
        self._reserved = (self._reserved[0] + size, self._reserved[1] + objects)

    def release(self, size: int, objects: int) -> None:
        self._reserved = (self._reserved[0] - size, self._reserved[1] - objects)

    def forget_usage(self) -> None:
        """A write is on its way: the next early check reads the usage afresh."""
        self._usage = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        runtime_dir: Path,
        data_dir: Path,
        *,
        max_inflight: int,
        timeout: float,
        with_overlay: bool = False,
        with_mailbox: bool = False,
    ) -> AsyncIterator[StoreBackend]:
        root = objstore.store_root(data_dir)
        async with contextlib.AsyncExitStack() as stack:
            storage = await stack.enter_async_context(
                CommandClient.connect(
                    runtime_dir, STORAGE, max_inflight=max_inflight, timeout=timeout
                )
            )
            index = await stack.enter_async_context(
                CommandClient.connect(
                    runtime_dir, INDEX, max_inflight=max_inflight, timeout=timeout
                )
            )
            peers = None
            if with_overlay:
                peers = await stack.enter_async_context(
                    CommandClient.connect(
                        runtime_dir, OVERLAY, max_inflight=max_inflight, timeout=timeout
                    )
                )
            mail = None
            if with_mailbox:
                mail = await stack.enter_async_context(
                    CommandClient.connect(runtime_dir, MAILBOX, max_inflight=512, timeout=timeout)
                )
            yield cls(root, storage, index, peers, mail)

    async def storage_call(self, request: Request[R]) -> R:
        """``request`` to svc-storage; its failure as the ``GatewayError`` to answer with."""
        try:
            return await call(self._storage, storage.PROTOCOL, request)
        except oap.OapError as exc:
            raise from_oap(exc) from None

    async def mail(self, request: Request[R], timeout: float) -> R:
        if self._mailbox is None:
            raise GatewayError("not_found", "this node runs no svc-mailbox")
        try:
            return await call(self._mailbox, mailbox.PROTOCOL, request, timeout=timeout)
        except oap.OapError as exc:
            raise from_oap(exc) from None

    async def index_call(self, request: Request[R]) -> R:
        try:
            return await call(self._index, index.PROTOCOL, request)
        except oap.OapError as exc:
            raise from_oap(exc) from None

    async def open_object(
        self, obj_id: str, prefetch: int, watch: FetchWatch | None = None
    ) -> StoredObject:
        try:
            return await self._open_local(obj_id, prefetch)
        except GatewayError as err:
            if err.reason != "not_found" or self._overlay is None:
                raise
        # Fetch by id: svc-overlay gets it from a peer, verifies it and commits it here; then
        # it is served like any local object (verified again as it is opened).
        outcome: GatewayError | None = ClientGone()  # unless the fetch ends first
        async with trio.open_nursery() as nursery:
            if watch is not None:
                nursery.start_soon(_cancel_on, watch.hangup, nursery.cancel_scope)
            try:
                await self._fetch(obj_id, watch.progress if watch is not None else None)
                outcome = None
            except GatewayError as err:  # raised here, not through the nursery (no group)
                outcome = err
            nursery.cancel_scope.cancel()
        if outcome is not None:
            raise outcome  # ClientGone: nobody to serve it to; svc-overlay stops it, unasked
        return await self._open_local(obj_id, prefetch)

    async def _fetch(
        self,
        obj_id: str,
        progress: Callable[[int], None] | None,
        order: int | None = None,
        group: str | None = None,
    ) -> None:
        """A long poll: each answer within FETCH_POLL_S says how far the fetch got, and
        ``progress`` pushes the request's deadline back by that (a progress deadline: any size
        the store accepts comes through; a stuck fetch is cut by svc-overlay's deadlines or the
        request's idle timeout). When this stops asking, svc-overlay stops the fetch."""
        assert self._overlay is not None
        received = 0
        while True:
            try:
                reply = await call(
                    self._overlay,
                    overlay.LOCAL,
                    overlay.Fetch(id=obj_id, wait=FETCH_POLL_S, order=order, group=group),
                    timeout=FETCH_POLL_S + 2.0,
                )
            except oap.OapError as exc:
                raise from_oap(exc) from None
            if reply.done:
                return
            if progress is not None and reply.received > received:
                progress(reply.received - received)
            received = reply.received

    def held(self, obj_id: str) -> bytes | None:
        data = self.hot.get(obj_id)
        if data is None or manifest.is_manifest(data):
            return None
        return data

    async def _open_local(self, obj_id: str, prefetch: int) -> StoredObject:
        def verify_and_read(fd: int, size: int) -> tuple[objstore.VerifiedObject, bytes]:
            obj = objstore.verify_opened(obj_id, fd, size)
            try:
                return obj, obj.read(0, min(prefetch, size))
            except BaseException:
                obj.close()
                raise

        def open_and_read() -> tuple[objstore.VerifiedObject, bytes]:
            fd, st = objstore.open_unverified(self._root, obj_id)
            return verify_and_read(fd, st.st_size)

        try:
            held = self.hot.get(obj_id)
            if held is not None:
                obj, head = objstore.VerifiedObject(obj_id, None, len(held), held), held
            else:
                # The open (a path walk and an fstat) is done here: it says the size, and a read
                # up to INLINE_READ costs less than the hop to a worker thread and back (about
                # 2x on GET 4 KiB). Bigger objects are opened again and hashed in a thread (a
                # wait for a thread can be cancelled: it must not hold an fd).
                fd, st = objstore.open_unverified(self._root, obj_id)
                if st.st_size <= INLINE_READ:
                    obj, head = verify_and_read(fd, st.st_size)
                    self.hot.put(obj_id, obj.read(0, obj.size), st)  # read whole to verify
                else:
                    os.close(fd)
                    obj, head = await _in_thread(open_and_read)
        except objstore.StoreError as exc:
            raise _store_error(exc, obj_id) from None
        if not manifest.is_manifest(head):
            return _VerifiedObject(obj, head)
        try:  # a manifest: at most 1 MiB, so read whole when it was verified (a slice)
            data = obj.read(0, obj.size) if obj.size <= objstore.READ_CHUNK else b""
        finally:
            obj.close()
        try:
            root = manifest.decode(data, max_size=self.max_object_size)
        except manifest.ManifestError as err:
            raise invalid(err) from None
        return ChunkedObject(obj_id, root, self)

    async def exists(self, obj_id: str) -> bool:
        path = objstore.object_path(self._root, obj_id)
        return await _in_thread(path.is_file)

    async def put_small(self, data: bytes) -> Stored:
        """One command carries the bytes: svc-storage writes, syncs and renames them in its
        commit round (one thread, no file creation racing a sync: see ``Store.put``)."""
        self.forget_usage()
        return await self.storage_call(storage.Put(data=data))

    async def begin_upload(self, max_size: int) -> Upload:
        return _ChunkingUpload(self, max_size)

    def new_temp(self, max_size: int) -> objstore.TempObject:
        """A temp object in this store (sync: run it in a thread)."""
        return objstore.TempObject(self._root, max_size=max_size)

    async def commit_temp(self, obj_id: str, size: int, tmp: str) -> Stored:
        """svc-storage makes the finished temp object ``tmp`` durable (it owns it from now)."""
        return await self.storage_call(storage.Commit(tmp=tmp, id=obj_id, size=size))

    # -- what reading a chunked object needs (chunked.ChunkSource) ---------------------------

    @property
    def can_fetch(self) -> bool:
        return self._overlay is not None

    async def fetch(self, obj_ids: list[str], first: int = 0, group: str | None = None) -> None:
        """Best effort: a fetch that fails here is tried again (and answered) by ``load``."""

        async def one(obj_id: str, order: int) -> None:
            with contextlib.suppress(GatewayError):
                await self._fetch(obj_id, None, order, group)

        async with trio.open_nursery() as nursery:
            for k, obj_id in enumerate(obj_ids):
                nursery.start_soon(one, obj_id, first + k)

    async def load(self, obj_id: str, *, fetch: bool = True) -> bytes:
        for attempt in (1, 2):
            try:
                obj = await _in_thread(objstore.open_verified, self._root, obj_id)
            except objstore.NotFound:
                if attempt == 2 or self._overlay is None or not fetch:
                    raise GatewayError("not_found", f"no object {obj_id}") from None
                await self._fetch(obj_id, None)
                continue
            except objstore.IntegrityError:
                logs.log("integrity_failure", level="error", reason="digest_mismatch", obj=obj_id)
                with contextlib.suppress(GatewayError):
                    await self.quarantine(obj_id)
                raise GatewayError("integrity_failure", f"{obj_id} does not match its id") from None
            except (objstore.StoreError, OSError) as exc:
                raise _store_error(exc, obj_id) from None
            try:
                if obj.size > manifest.CHUNK:
                    raise GatewayError("manifest_invalid", f"{obj_id} is larger than a chunk")
                data = obj.read(0, obj.size)  # read whole to verify: a slice of that copy
            finally:
                obj.close()
            self.chunk_reads += 1
            if self.on_chunk_read is not None:
                self.on_chunk_read()
            return data
        raise AssertionError("unreachable")

    async def sizes(self, obj_ids: list[str]) -> list[tuple[int, bytes] | None]:
        def stat_all() -> list[tuple[int, bytes] | None]:
            out: list[tuple[int, bytes] | None] = []
            for obj_id in obj_ids:
                path = objstore.object_path(self._root, obj_id)
                try:
                    size = os.stat(path).st_size
                    head = b""
                    if size < manifest.CHUNK:  # only a last chunk: one small read
                        with open(path, "rb") as f:
                            head = f.read(len(manifest.MAGIC))
                except FileNotFoundError:
                    out.append(None)
                    continue
                out.append((size, head))
            return out

        return await _in_thread(stat_all)

    async def quarantine(self, obj_id: str) -> None:
        await self.storage_call(storage.Quarantine(id=obj_id))

    async def get_name(self, name: str) -> NameRecord:
        return await self.index_call(index.GetName(name=name))

    async def list_names(self, prefix: str, after: str, limit: int) -> index.NameList:
        return await self.index_call(index.ListNames(prefix=prefix, after=after, max=limit))

    async def put_name(
        self, name: str, obj_id: str, expect_version: int | None, type_: str | None = None
    ) -> NameRecord:
        # Touch first: a GC that began before this name lands keeps its target (its grace
        # window starts again now); the name may still point at an id this node lacks.
        await self.storage_call(storage.Touch(id=obj_id))
        return await self.index_call(
            index.PutName(name=name, id=obj_id, expect_version=expect_version, type=type_)
        )

    async def set_type(self, obj_id: str, type_: str) -> None:
        await self.index_call(index.SetType(id=obj_id, type=type_))


async def _cancel_on(event: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await event()
    scope.cancel()
