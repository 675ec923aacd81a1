"""Fetches in flight: one per object id, owned by svc-overlay's nursery, kept going only while
somebody waits for it.

Guarantees:

- one fetch per id: a second caller for the same id joins the first fetch;
- a caller waits at most its ``wait`` (0: until the end) and learns the bytes received so far,
  which is what the gateway's progress deadline rests on;
- a fetch that nobody has waited on for ``ORPHAN_S`` is cancelled (its partial copy removed):
  when the caller is gone (a client hung up, a gateway timed out), the fetch stops;
- at most ``MAX_JOBS`` fetches at once; one more is answered 503 ``busy``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

from ipc import oap
from ipc.proto import overlay

__all__ = ["MAX_JOBS", "ORPHAN_S", "FetchJobs", "Progress"]

ORPHAN_S = 2.0
MAX_JOBS = 64


@attrs.define
class Progress:
    """What a running fetch has so far (written by the fetch, read by its callers)."""

    size: int = 0
    received: int = 0


@attrs.define
class _Job:
    progress: Progress = attrs.field(factory=Progress)
    done: trio.Event = attrs.field(factory=trio.Event)
    result: overlay.Fetched | None = None
    error: oap.OapError | None = None
    waiters: int = 0
    last_waited: float = 0.0
    hints: overlay.Fetch | None = None  # its first caller's request (order, group)


Run = Callable[[str, Progress, overlay.Fetch | None], Awaitable[overlay.Fetched]]


class FetchJobs:
    def __init__(self, run: Run, *, orphan_s: float = ORPHAN_S, max_jobs: int = MAX_JOBS) -> None:
        self._run = run
        self._orphan_s = orphan_s
        self._max = max_jobs
        self._jobs: dict[str, _Job] = {}
        self._nursery: trio.Nursery | None = None

    def bind(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def __len__(self) -> int:
        return len(self._jobs)

    async def ask(
        self, obj_id: str, wait: float, hints: overlay.Fetch | None = None
    ) -> overlay.Fetched:
        """The outcome when it is there within ``wait`` s (0: wait for it); else the progress.
        ``hints``: the request's ``order`` and ``group`` (a fetch under way keeps its own)."""
        job = self._jobs.get(obj_id)
        if job is None:
            job = self._spawn(obj_id)
            job.hints = hints
        job.waiters += 1
        try:
            with trio.move_on_after(wait if wait > 0 else float("inf")):
                await job.done.wait()
        finally:
            job.waiters -= 1
            job.last_waited = trio.current_time()
        if job.error is not None:
            raise job.error
        if job.result is not None:
            return job.result
        p = job.progress
        return overlay.Fetched(id=obj_id, size=p.size, peer="", done=False, received=p.received)

    def _spawn(self, obj_id: str) -> _Job:
        if len(self._jobs) >= self._max:
            raise oap.OapError("busy", f"{self._max} fetches in flight", retry_after=1)
        assert self._nursery is not None, "FetchJobs.bind was not called"
        job = self._jobs[obj_id] = _Job(last_waited=trio.current_time())
        self._nursery.start_soon(self._own, obj_id, job)
        return job

    async def _own(self, obj_id: str, job: _Job) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_when_orphaned, job, nursery.cancel_scope)
                try:
                    job.result = await self._run(obj_id, job.progress, job.hints)
                except oap.OapError as exc:
                    job.error = exc
                nursery.cancel_scope.cancel()
            if job.result is None and job.error is None:
                job.error = oap.OapError("unavailable", "the fetch stopped: nobody waited for it")
        finally:
            del self._jobs[obj_id]
            job.done.set()

    async def _stop_when_orphaned(self, job: _Job, fetch: trio.CancelScope) -> None:
        while True:
            await trio.sleep_until(job.last_waited + self._orphan_s)
            if job.waiters == 0 and trio.current_time() >= job.last_waited + self._orphan_s:
                fetch.cancel()
                return
            if job.waiters:
                job.last_waited = trio.current_time()
