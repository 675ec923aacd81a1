"""The committer of svc-storage: admission against quotas, group commit, quarantine.

The durability argument is in ``specs/storage-protocol.md``; the guarantees are listed in the
package docstring (``services.storage``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path

import attrs
import trio

from ipc import ids, oap
from kernel import logs
from kernel.group_commit import take_batch
from kernel.metrics import Metrics
from services.lib import objstore
from services.storage.reach import is_manifest_file
from services.storage.settings import StorageSettings

__all__ = ["Store", "Usage"]

HINT_EVERY = 1.0  # seconds between writes of the usage hint (while usage changes)
# the background count takes at most this share of a core (it sleeps between fan-out dirs):
# a restart storm's counts must not slow the services coming back, nor the live ones
RECONCILE_DUTY = 0.25
_THREADS = 8  # parallel hashing threads of one batch of large objects
_PARALLEL_VERIFY_BYTES = 8 << 20  # below this a batch is hashed in one thread (cheaper)


@attrs.define
class Usage:
    bytes: int = 0
    objects: int = 0


@attrs.define
class _Reconcile:
    """A background count of the store, fan-out dir by fan-out dir, each under the store's
    lock: ``bytes``/``objects`` are the dirs counted so far plus every change to them since."""

    scanned: set[str] = attrs.field(factory=set)
    bytes: int = 0
    objects: int = 0


@attrs.define(eq=False)
class _Job:
    tmp: str
    obj_id: str
    size: int
    done: trio.Event = attrs.field(factory=trio.Event)
    created: bool | None = None
    error: oap.OapError | None = None
    exists: bool = False
    data: bytes | None = None  # a ``put``: written (and hashed) by the committer's round

    def fail(self, error: oap.OapError) -> None:
        if self.error is None and self.created is None:
            self.error = error


def _os_error(exc: OSError, what: str) -> oap.OapError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return oap.OapError("insufficient_storage", f"{what}: the disk is full")
    return oap.OapError("internal", f"{what}: {exc.strerror or exc}")


class Store:
    """The committer: one batch at a time, each batch made durable as a group."""

    def __init__(self, root: Path, settings: StorageSettings, metrics: Metrics | None) -> None:
        self.root = root
        self.settings = settings
        self.metrics = metrics
        self.usage = Usage()
        self.counted = trio.Event()  # usage was counted (until then: the last process's hint)
        self._reconcile: _Reconcile | None = None
        self._send, self._recv = trio.open_memory_channel[_Job](settings.batch_max * 4)
        self.lock = trio.Lock()  # batches, quarantines, pins and GC sweeps never interleave
        self._limiter = trio.CapacityLimiter(_THREADS)
        self._pool: ThreadPoolExecutor | None = None  # parallel fsyncs (group_sync = false)
        self.batches = 0
        self._durable: set[str] = set()  # fan-out dirs fsynced since open (see open)
        # while a GC runs: called (in the committer's thread, under ``lock``) with the hex id
        # of every object a commit creates or acknowledges again (``services.storage.reach``)
        self.gc_reach: Callable[[str], None] | None = None
        # moves on whenever the set of manifests may have changed (a manifest committed, a GC
        # removed objects): what ``ronctl ls`` knows of manifests and chunks is as of a value
        self.manifest_gen = 0
        self._laid_out = False

    async def lay_out(self) -> None:
        """Create what is missing of the layout (idempotent, safe while another process serves
        the store: a warm spare does it ahead of ``open``)."""
        await trio.to_thread.run_sync(objstore.ensure_layout, self.root)
        self._laid_out = True

    async def open(self) -> None:
        """Layout and usage; O(1) in the objects held.

        The startup barrier (whatever a previous process left visible is durable before a
        duplicate commit is acknowledged against it) is per fan-out dir and off the start
        path: ``sync_fanouts`` fsyncs every dir in the background, and until it has reached a
        dir, a duplicate in it waits for that dir's fsync in its commit's barrier.

        Usage starts from the hint the last process kept (``objstore.USAGE_HINT``) and is
        counted again in the background (``reconcile``) while the store serves: a restart of
        a full store is not a walk of it. Without a hint (a new store, or an old one) it is
        counted here, once. Why a hint is enough: quota checks run on it only until the
        background count replaces it (a few seconds per 100,000 objects), and it is at
        most ``HINT_EVERY`` seconds behind a killed process (a machine crash: older)."""

        def prepare() -> tuple[tuple[int, int], bool]:
            if not self._laid_out:
                objstore.ensure_layout(self.root)
            hint = objstore.read_usage_hint(self.root)
            if hint is not None:
                return hint, False
            return objstore.scan_usage(self.root), True

        (used, count), counted = await trio.to_thread.run_sync(prepare)
        if counted:
            self.counted.set()
        self.usage = Usage(used, count)
        self.publish_usage()
        logs.log("store_opened", bytes=used, objects=count, counted=counted)

    @property
    def exact(self) -> bool:
        """Whether usage is a count of the store (else the last process's hint)."""
        return self.counted.is_set()

    async def keep_usage(self) -> None:
        """Recount the store if it opened on a hint, then keep the hint fresh (every
        ``HINT_EVERY`` s while usage changes); returns never."""
        if not self.exact:
            await self.reconcile()
        written: tuple[int, int] | None = None
        failing = False
        while True:
            now = (self.usage.bytes, self.usage.objects)
            if now != written:
                try:
                    await trio.to_thread.run_sync(objstore.write_usage_hint, self.root, *now)
                except OSError as exc:  # a full disk: the hint waits, the store serves on
                    if not failing:
                        logs.log("usage_hint_unwritten", level="warning", reason=str(exc))
                    failing = True
                else:
                    written, failing = now, False
            await trio.sleep(HINT_EVERY)

    async def reconcile(self) -> None:
        """Count every fan-out dir, each under the lock (so no commit, GC or quarantine is
        half-seen), adding the changes to dirs already counted; then that count is the usage.
        Paced to ``RECONCILE_DUTY`` of a core (about 2.5 s per 100,000 objects here)."""
        tally = self._reconcile = _Reconcile()
        for fanout in objstore.FANOUT:
            started = trio.current_time()
            async with self.lock:
                size, n = await trio.to_thread.run_sync(objstore.scan_dir_usage, self.root, fanout)
                tally.bytes += size
                tally.objects += n
                tally.scanned.add(fanout)
            took = trio.current_time() - started
            await trio.sleep(took * (1 / RECONCILE_DUTY - 1))
        async with self.lock:
            drift = (tally.bytes - self.usage.bytes, tally.objects - self.usage.objects)
            self.usage = Usage(tally.bytes, tally.objects)
            self._reconcile = None
            self.counted.set()
        self.publish_usage()
        logs.log(
            "usage_counted",
            bytes=tally.bytes,
            objects=tally.objects,
            hint_off_bytes=drift[0],
            hint_off_objects=drift[1],
        )

    def moved(self, fanout: str, size: int, objects: int) -> None:
        """Usage changes by ``size`` bytes and ``objects`` in ``fanout`` (under the lock)."""
        self.usage.bytes += size
        self.usage.objects += objects
        tally = self._reconcile
        if tally is not None and fanout in tally.scanned:
            tally.bytes += size
            tally.objects += objects

    async def sync_fanouts(self) -> None:
        """The startup barrier, in the background: fsync each fan-out dir (and the store's
        other dirs) once; a dir counts as durable from then on (see ``open``)."""
        for child in sorted(await trio.to_thread.run_sync(lambda: list(self.root.iterdir()))):
            if await trio.to_thread.run_sync(child.is_dir):
                await trio.to_thread.run_sync(objstore.fsync_dir, child, limiter=self._limiter)
                self._durable.add(child.name)

    async def sweep_forever(self) -> None:
        """Stale temp files, at start (in the background: they are invisible) and then every
        half ``tmp_max_age``."""
        interval = min(max(self.settings.tmp_max_age / 2, 1.0), 300.0)
        while True:
            swept = await trio.to_thread.run_sync(
                objstore.sweep_temps, self.root, self.settings.tmp_max_age
            )
            if swept:
                logs.log("temps_swept", count=swept)
            await trio.sleep(interval)

    # -- requests ---------------------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if size > self.settings.max_object_size:
            raise oap.OapError(
                "object_too_large",
                f"{size} bytes is over the {self.settings.max_object_size}-byte object cap",
            )

    async def commit(self, tmp: str, obj_id: str, size: int) -> bool:
        """Make temp file ``tmp`` the object ``obj_id`` durably; True if it was created."""
        try:
            objstore.temp_path(self.root, tmp)
        except ValueError as exc:
            raise oap.OapError("schema_invalid", str(exc)) from None
        job = _Job(tmp, obj_id, size)
        try:
            if not ids.is_id(obj_id):
                raise oap.OapError("schema_invalid", f"{obj_id!r:.80} is not a content id")
            self._check_size(size)
            await self._counted_if_full(size)
            await self._send.send(job)
            await job.done.wait()
            if job.error is not None:
                raise job.error
        except oap.OapError:  # whatever failed, the temp file is of no further use
            await trio.to_thread.run_sync(objstore.remove_temp, self.root, tmp)
            raise
        assert job.created is not None
        return job.created

    async def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` (a small object sent whole) through the same commit path. The temp
        file is written by the committer's round, in the thread that also syncs and renames:
        file creation racing a concurrent sync costs several times the CPU (measured on ext4),
        and the bytes are hashed as they are written, so they need no second read."""
        self._check_size(len(data))
        await self._counted_if_full(len(data))
        job = _Job("", "", len(data), data=data)
        try:
            await self._send.send(job)
            await job.done.wait()
            if job.error is not None:
                raise job.error
        finally:
            if job.tmp and job.created is None:  # failed after the temp file was written
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, job.tmp)
        assert job.created is not None
        return job.obj_id, job.created

    def full_for(self, size: int) -> bool:
        s = self.settings
        return self.usage.bytes + size > s.max_bytes or self.usage.objects + 1 > s.max_objects

    async def _counted_if_full(self, size: int) -> None:
        """A write the hint would refuse waits for the count: only the truth refuses (507)."""
        if not self.exact and self.full_for(size):
            await self.counted.wait()

    async def stat(self, obj_id: str) -> int:
        try:
            path = objstore.object_path(self.root, obj_id)
        except ids.BadId as exc:
            raise oap.OapError("schema_invalid", str(exc)) from None
        try:
            st = await trio.to_thread.run_sync(path.stat)
        except FileNotFoundError:
            raise oap.OapError("not_found", f"{obj_id} not found") from None
        return st.st_size

    async def quarantine(self, obj_id: str) -> bool:
        try:
            ids.parse_id(obj_id)
        except ids.BadId as exc:
            raise oap.OapError("schema_invalid", str(exc)) from None
        async with self.lock:
            try:
                size = await trio.to_thread.run_sync(objstore.quarantine, self.root, obj_id)
            except objstore.NotFound:
                return False
            if size is None:
                return False
            self.moved(objstore.fanout_of(obj_id), -size, -1)
        self.publish_usage()
        if self.metrics is not None:
            self.metrics.integrity_fail.inc()
        logs.log("object_quarantined", level="error", reason="integrity_failure", id=obj_id)
        return True

    # -- the committer ----------------------------------------------------------------------

    async def run_committer(self) -> None:
        """The commit pipeline. Each round: take what has arrived (a batch), hash and admit it,
        then ONE barrier makes both this batch's new files and the previous round's renames
        durable; acknowledge the previous round; rename this batch into place. So under load
        each sync serves two batches, and every commit still gets its two barriers (file data
        before its rename is visible; the rename before its ack)."""
        pending: list[_Job] = []  # renamed (or duplicate) jobs waiting for their barrier
        while True:
            batch = await take_batch(self._recv, self.settings.batch_max, wait=not pending)
            async with self.lock:
                try:
                    waiting = await self._round(batch, pending)
                except BaseException:  # nothing of this round is known durable
                    for job in (*pending, *batch):
                        job.created = None
                        job.fail(oap.OapError("internal", "commit did not finish"))
                        job.done.set()
                    raise
                for job in pending:  # this round's barrier covered them (or they failed)
                    self._ack(job)
                for job in batch:
                    if job not in waiting:
                        self._ack(job)
                pending = waiting
            self.batches += 1

    @staticmethod
    def _ack(job: _Job) -> None:
        if job.created is None and job.error is None:
            job.error = oap.OapError("internal", "commit did not finish")
        job.done.set()

    async def _round(self, batch: list[_Job], pending: list[_Job]) -> list[_Job]:
        """One pipeline round; returns the jobs that now wait for the next barrier."""
        commits = [job for job in batch if job.data is None]
        parallel = len(commits) > 1 and sum(j.size for j in commits) > _PARALLEL_VERIFY_BYTES
        if parallel:  # big objects: hash them on several cores at once
            async with trio.open_nursery() as nursery:
                for job in commits:
                    nursery.start_soon(self._verify_in_thread, job)
        return await trio.to_thread.run_sync(self._round_sync, batch, pending, not parallel)

    async def _verify_in_thread(self, job: _Job) -> None:
        await trio.to_thread.run_sync(self._verify, job, limiter=self._limiter)

    def _verify(self, job: _Job) -> None:
        """Re-hash the temp file: its bytes must be exactly the claimed id and size."""
        try:
            got_id, got_size = objstore.hash_file(objstore.temp_path(self.root, job.tmp))
            job.exists = objstore.object_path(self.root, job.obj_id).exists()
        except objstore.NotFound:
            job.fail(oap.OapError("not_found", f"temp file {job.tmp} not found"))
            return
        except OSError as exc:
            job.fail(_os_error(exc, "verify"))
            return
        if (got_id, got_size) != (job.obj_id, job.size):
            job.fail(
                oap.OapError(
                    "digest_mismatch",
                    f"temp file holds {got_size} bytes hashing to {got_id}, "
                    f"not {job.size} bytes of {job.obj_id}",
                )
            )
            objstore.remove_temp(self.root, job.tmp)  # useless now: drop it

    def _write(self, job: _Job) -> None:
        """A ``put``: write its bytes to a temp file, hashing them on the way (no re-read)."""
        data, job.data = job.data, None
        assert data is not None
        try:
            with objstore.TempObject(self.root, len(data)) as temp:
                temp.write(data)
                job.obj_id, job.size, job.tmp = temp.finish()
            job.exists = objstore.object_path(self.root, job.obj_id).exists()
        except OSError as exc:
            job.fail(_os_error(exc, "write"))
        except objstore.StoreError as exc:
            job.fail(oap.OapError("internal", f"write: {exc}"))

    def _round_sync(self, batch: list[_Job], pending: list[_Job], verify: bool) -> list[_Job]:
        """Everything after hashing, in one worker thread (the committer holds ``lock``, so
        nothing else touches ``usage`` meanwhile). Returns the jobs awaiting the next barrier
        and marks ``pending`` ready to acknowledge (or failed)."""
        for job in batch:
            if job.data is not None:
                self._write(job)
            elif verify:
                self._verify(job)
        new = self._admit(batch)
        dirs = self._dirs_to_sync(pending)
        try:
            self._barrier(new, dirs)
        except OSError as exc:
            self._release(new)
            for job in new:
                job.fail(_os_error(exc, "fsync"))
            for job in pending:  # their renames may not be durable: no promise
                job.created = None
                job.fail(_os_error(exc, "fsync dir"))
            return []
        self._install_all(batch, new)
        self._release([job for job in new if job.created is not True])
        waiting = [job for job in batch if job.created is not None]
        if waiting and self._recv.statistics().current_buffer_used == 0:
            # nobody queued behind this batch (e.g. a lone writer): close it now, in this
            # thread, instead of in an empty next round (a plain int read: safe off-thread)
            try:
                self._barrier([], self._dirs_to_sync(waiting))
            except OSError as exc:
                for job in waiting:
                    job.created = None
                    job.fail(_os_error(exc, "fsync dir"))
            return []
        return waiting

    def _dir_of(self, job: _Job) -> Path:
        return objstore.object_path(self.root, job.obj_id).parent

    def _dirs_to_sync(self, jobs: list[_Job]) -> set[Path]:
        """The dirs a barrier must fsync before ``jobs`` are acknowledged: those of new files,
        and those of duplicates whose dir the startup barrier has not reached yet."""
        return {
            self._dir_of(j)
            for j in jobs
            if j.created
            or (j.created is False and objstore.fanout_of(j.obj_id) not in self._durable)
        }

    def _barrier(self, new: list[_Job], dirs: set[Path]) -> None:
        """Make the new temp files and the directories of earlier renames durable."""
        if not new and not dirs:
            return
        if self.settings.group_sync and len(new) + len(dirs) > 1:
            objstore.sync_filesystem(self.root)
            return

        def sync_temp(job: _Job) -> None:
            try:
                objstore.sync_file(objstore.temp_path(self.root, job.tmp))
            except FileNotFoundError:
                job.fail(oap.OapError("not_found", f"temp file {job.tmp} vanished"))

        # fsyncs issued together (parallel threads) share journal commits on ext4/xfs
        work: list[Callable[[], None]] = [partial(sync_temp, job) for job in new]
        work += [partial(objstore.fsync_dir, path) for path in dirs]
        if len(work) == 1:
            work[0]()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="fsync")
        futures = [self._pool.submit(fn) for fn in work]
        wait(futures)  # all of them finish before any failure is reported
        for future in futures:
            future.result()  # the first OSError, if any

    def _release(self, jobs: list[_Job]) -> None:
        """Give back the quota reserved for jobs that did not create their object."""
        for job in jobs:
            self.moved(objstore.fanout_of(job.obj_id), -job.size, -1)
        self.publish_usage()

    def _admit(self, batch: list[_Job]) -> list[_Job]:
        """Decide in arrival order which jobs create an object (quota reserved for them); the
        rest are duplicates, 507 (temp dropped) or already failed."""
        new: list[_Job] = []
        claimed: set[str] = set()
        s = self.settings
        for job in batch:
            if job.error is not None or job.exists or job.obj_id in claimed:
                continue
            if self.full_for(job.size) and not self.exact:  # raced the count: ask again
                job.fail(
                    oap.OapError("unavailable", "the store is counting its usage", retry_after=1)
                )
                objstore.remove_temp(self.root, job.tmp)
                continue
            if self.full_for(job.size):
                job.fail(
                    oap.OapError(
                        "insufficient_storage",
                        f"store full: {self.usage.bytes}/{s.max_bytes} bytes, "
                        f"{self.usage.objects}/{s.max_objects} objects",
                    )
                )
                objstore.remove_temp(self.root, job.tmp)
                continue
            claimed.add(job.obj_id)
            self.moved(objstore.fanout_of(job.obj_id), job.size, 1)
            new.append(job)
        if new:
            self.publish_usage()
        return new

    def publish_usage(self) -> None:
        """``storage_bytes`` / ``storage_objects`` / ``storage_quota_bytes`` as they are now."""
        if self.metrics is not None:
            self.metrics.gauge("storage_bytes").set(self.usage.bytes)
            self.metrics.gauge("storage_objects").set(self.usage.objects)
            self.metrics.gauge("storage_quota_bytes").set(self.settings.max_bytes)

    def _install_all(self, batch: list[_Job], new: list[_Job]) -> None:
        """Renames, in arrival order.

        Only durable temps (``new``) are ever renamed; a duplicate's temp (never synced) is
        dropped, and acknowledged only if the object it duplicates is in place."""
        fresh = {id(job) for job in new}
        for job in batch:
            if job.error is not None:
                continue
            try:
                if id(job) in fresh:
                    job.created = objstore.install(self.root, job.tmp, job.obj_id)
                    if job.created and is_manifest_file(self.root, job.obj_id, job.size):
                        self.manifest_gen += 1
                else:
                    objstore.remove_temp(self.root, job.tmp)
                    try:  # acknowledged again: its GC grace window starts again too
                        os.utime(objstore.object_path(self.root, job.obj_id))
                    except FileNotFoundError:
                        job.fail(oap.OapError("internal", "a concurrent commit failed; retry"))
                        continue
                    job.created = False
                if self.gc_reach is not None:
                    self.gc_reach(ids.parse_id(job.obj_id))
            except FileNotFoundError:
                job.fail(oap.OapError("not_found", f"temp file {job.tmp} vanished"))
                continue
            except OSError as exc:
                job.fail(_os_error(exc, "rename"))
