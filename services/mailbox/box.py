"""The async side of svc-mailbox: group commit, long polls and the outbox's hand-offs.

Guarantees:

- every operation that changes a table is answered only after the transaction holding it
  committed (fsynced WAL): an acknowledged send, ack, nack or extend survives a kill -9;
- operations that arrive together share one transaction (group commit: one fsync for many
  sends, receives and acks), applied in arrival order; a refused one (quota: 507) changes
  nothing and the others go on; at most ``batch_max`` per transaction, and the queue in
  front of the committer is bounded (a full queue makes callers wait: their own in-flight cap
  sheds the excess);
- a long poll (``wait`` > 0) is woken by the commit that makes a message visible in its
  mailbox, or when a hidden one's visibility ends, or at its deadline; it never spins;
- SQLite runs only in worker threads: the committer's (writes) and one reader at a time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from ipc import oap
from ipc.proto import mailbox as proto
from kernel import logs
from kernel.group_commit import take_batch
from services.mailbox.store import Effects, MailDb

__all__ = ["BATCH_MAX", "PURGE_EVERY", "Job", "Mailboxes", "apply_batch"]

BATCH_MAX = 256  # operations per transaction
PURGE_EVERY = 60.0  # seconds between retention sweeps
T = TypeVar("T")


@attrs.define(eq=False)
class Job:
    # Any: a batch holds every kind of operation, each with its own result type; ``run``
    # (generic in T) hands each caller back its own, typed
    fn: Callable[[Effects, float], Any]
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: oap.OapError | None = None


class _Waiting:
    """The receives of one mailbox in progress: one event, set (and replaced) by a commit that
    makes a message visible there; ``count`` receives hold it."""

    __slots__ = ("count", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.count = 0


class Mailboxes:
    """Owns a ``MailDb``; ``run`` must be running for any operation to finish."""

    def __init__(
        self,
        db: MailDb,
        *,
        batch_max: int = BATCH_MAX,
        on_commit: Callable[[Effects], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.batch_max = batch_max
        self.on_commit = on_commit
        self.clock = clock
        self._send, self._recv = trio.open_memory_channel[Job](batch_max * 2)
        self._waiting: dict[str, _Waiting] = {}
        self._read_lock = trio.Lock()
        self.outbox_wake = trio.Event()  # set (then replaced) when the outbox got entries

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._commit_loop)
            nursery.start_soon(self._purge_loop)
            task_status.started()

    # --- the committer ----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            batch = await take_batch(self._recv, self.batch_max)
            fx = Effects()
            try:
                await trio.to_thread.run_sync(self._apply, batch, fx)
            except sqlite3.Error as exc:
                logs.log("mailbox_commit_failed", level="error", reason=str(exc)[:200])
                for job in batch:
                    job.result = None
                    job.error = oap.OapError("internal", "the mailbox commit failed")
            else:
                self._after(fx)
            finally:
                for job in batch:
                    job.done.set()

    def _apply(self, batch: list[Job], fx: Effects) -> None:
        apply_batch(self.db, batch, fx, self.clock)

    def _after(self, fx: Effects) -> None:
        for mailbox in fx.wake:
            waiting = self._waiting.get(mailbox)
            if waiting is not None:
                waiting.event.set()
                waiting.event = trio.Event()
        if fx.outbox:
            self.outbox_wake.set()
            self.outbox_wake = trio.Event()
        if self.on_commit is not None:
            self.on_commit(fx)

    async def _submit(self, fn: Callable[[Effects, float], T]) -> T:
        job = Job(fn)
        await self._send.send(job)
        with trio.CancelScope(shield=True):  # once queued it commits: wait to say so
            await job.done.wait()
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    async def _purge_loop(self) -> None:
        while True:
            gone = await self._submit(self.db.purge)
            if gone:
                logs.log("mailbox_purged", messages=gone)
            await trio.sleep(PURGE_EVERY)

    async def _read(self, fn: Callable[[], T]) -> T:
        async with self._read_lock:
            return await trio.to_thread.run_sync(fn)

    # --- operations -------------------------------------------------------------------------

    async def send(
        self,
        address: str,
        remote: bool,
        messages: Sequence[proto.Outgoing],
        origin: str | None = None,
        owner: str | None = None,
    ) -> proto.Sent:
        return await self._submit(
            lambda fx, now: self.db.send(fx, address, remote, messages, now, origin, owner)
        )

    async def receive(
        self, mailbox: str, limit: int, visibility: float | None, wait: float
    ) -> proto.Received:
        deadline = trio.current_time() + wait
        while True:
            # held from before the receive until the wait ends: a commit in between sets this
            # event, and the entry lives exactly as long as someone holds it
            waiting = self._waiting.get(mailbox) or self._waiting.setdefault(mailbox, _Waiting())
            waiting.count += 1
            try:
                event = waiting.event
                got, next_visible = await self._submit(
                    lambda fx, now: self.db.receive(fx, mailbox, limit, visibility, now)
                )
                left = deadline - trio.current_time()
                if got or left <= 0:
                    return proto.Received(messages=tuple(got))
                if next_visible is not None:
                    left = min(left, max(0.0, next_visible - self.clock()) + 0.001)
                with trio.move_on_after(left):
                    await event.wait()
            finally:
                waiting.count -= 1
                if waiting.count == 0 and self._waiting.get(mailbox) is waiting:
                    del self._waiting[mailbox]

    async def ack(self, mailbox: str, receipts: Sequence[str]) -> proto.Changed:
        return await self._submit(lambda fx, _now: self.db.ack(fx, mailbox, receipts))

    async def nack(self, mailbox: str, receipts: Sequence[str], delay: float) -> proto.Changed:
        return await self._submit(lambda fx, now: self.db.nack(fx, mailbox, receipts, delay, now))

    async def extend(
        self, mailbox: str, receipts: Sequence[str], visibility: float
    ) -> proto.Changed:
        return await self._submit(
            lambda fx, now: self.db.extend(fx, mailbox, receipts, visibility, now)
        )

    async def redrive(self, mailbox: str, limit: int) -> proto.Redriven:
        return await self._submit(lambda fx, now: self.db.redrive(fx, mailbox, limit, now))

    async def dlq(self, mailbox: str, limit: int) -> proto.DeadLetters:
        return await self._read(lambda: self.db.dlq(mailbox, limit))

    async def outbox_list(self, limit: int) -> proto.OutboxList:
        return await self._read(lambda: self.db.outbox_list(limit))

    async def receipt(self, msg_id: str) -> proto.DeliveryState:
        return await self._read(lambda: self.db.receipt(msg_id))

    async def outbox_due(
        self, limit: int
    ) -> tuple[list[tuple[str, str, bytes, int]], float | None]:
        now = self.clock()
        return await self._read(lambda: self.db.outbox_due(now, limit))

    async def outbox_done(self, msg_ids: Sequence[str], state: str = "delivered") -> None:
        await self._submit(lambda fx, now: self.db.outbox_done(fx, msg_ids, now, state))

    async def outbox_failed(self, msg_ids: Sequence[str], error: str, next_try: float) -> None:
        await self._submit(lambda fx, _now: self.db.outbox_failed(fx, msg_ids, error, next_try))


def apply_batch(db: MailDb, batch: Sequence[Job], fx: Effects, clock: Callable[[], float]) -> None:
    """One transaction for ``batch``, in order (a worker thread runs it; tests call it
    directly). A job's ``OapError`` comes before it wrote anything (``MailDb``): that job alone
    fails. Anything else undoes the whole transaction and is raised."""
    db.begin()
    try:
        for job in batch:
            jfx = Effects()
            try:
                result = job.fn(jfx, clock())
            except oap.OapError as exc:
                db.undo(jfx)
                job.error = exc
                continue
            except BaseException:
                db.undo(jfx)
                raise
            fx.merge(jfx)
            job.result = result
        db.commit(fx)
    except BaseException:
        db.rollback(fx)
        raise
