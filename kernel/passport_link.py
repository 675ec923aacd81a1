"""The kernel's link to the identity service (``kernel.exposes.ROLE_IDENTITY``): token acts for
the control plane, the node's identity for ``/version``, and the audit records of the kernel's
own privileged acts.

Why the kernel does not hold keys itself: custody is the identity service's (DESIGN.md §5); the
kernel only asks. Audit records of kernel acts (reload, release, stop, quarantine) go through a
bounded outbox drained by one task, so an act never waits on the identity service being up; a
record that cannot be delivered within ``AUDIT_RETRY_FOR`` is dropped, logged and counted
(``queue_dropped_total{queue="audit"}``), never silently lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.plain import Json
from ipc.proto import passport as proto
from ipc.proto.codec import Request, call
from kernel import logs
from kernel.metrics import Metrics

__all__ = ["PassportLink", "PassportUnavailable"]

CALL_TIMEOUT = 3.0
AUDIT_QUEUE = 256
AUDIT_RETRY_FOR = 30.0  # seconds a record waits for the identity service before it is dropped
R = TypeVar("R")


class PassportUnavailable(Exception):
    """the identity service did not answer (not running, or refused); ``str()`` is one line."""


class PassportLink:
    """One command client to the identity service plus the audit outbox (``PassportLink.open``)."""

    def __init__(self, client: CommandClient, service: str, metrics: Metrics) -> None:
        self._client = client
        self._service = service
        self._dropped = metrics.queue_dropped.labels(queue="audit")
        self._send, self._recv = trio.open_memory_channel[tuple[str, dict[str, str], float]](
            AUDIT_QUEUE
        )
        self._idle = trio.Event()
        self._idle.set()
        self._pending = 0
        self.node_id: str | None = None
        self.identity_known = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, runtime_dir: Path, service: str, metrics: Metrics
    ) -> AsyncIterator[PassportLink]:
        """A link to ``service``, the one that holds the identity role (``kernel.exposes``)."""
        async with CommandClient.connect(
            runtime_dir, service, max_inflight=8, timeout=CALL_TIMEOUT
        ) as client:
            yield cls(client, service, metrics)

    async def call(self, request: Request[R], timeout: float = CALL_TIMEOUT) -> R:
        """``request``'s typed reply; ``PassportUnavailable`` (one line) if there is none, or
        ``oap.OapError`` when the identity service refused it (a bad argument: the caller's 4xx)."""
        try:
            return await call(self._client, proto.PROTOCOL, request, timeout=timeout)
        except oap.OapError as exc:
            if exc.reason in ("schema_invalid", "insufficient_storage"):
                raise
            raise PassportUnavailable(f"{self._service} did not answer: {exc.reason}") from None

    async def learn_identity(self) -> None:
        """Ask for the node id until the identity service answers (it may still be starting)."""
        while self.node_id is None:
            try:
                self.node_id = (await self.call(proto.Identity())).node_id
            except (PassportUnavailable, oap.OapError):
                await trio.sleep(0.2)
        self.identity_known.set()

    def record(self, act: str, **detail: Json) -> None:
        """Queue an audit record of a kernel act; never blocks (a full outbox drops, counted)."""
        entry = (act, {k: str(v) for k, v in detail.items()}, time.monotonic())
        try:
            self._send.send_nowait(entry)
        except trio.WouldBlock:
            self._dropped.inc()
            logs.log("audit_dropped", level="error", act=act, reason="outbox_full")
            return
        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    async def drained(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until every queued record was delivered or dropped."""
        with trio.move_on_after(timeout):
            await self._idle.wait()
        return self._pending == 0

    async def run_outbox(self) -> None:
        """Deliver queued records in order, retrying each for up to ``AUDIT_RETRY_FOR``."""
        async for act, detail, queued in self._recv:
            while True:
                try:
                    await self.call(proto.Audit(act=act, detail=detail))
                    break
                except (PassportUnavailable, oap.OapError) as exc:
                    if time.monotonic() - queued > AUDIT_RETRY_FOR:
                        self._dropped.inc()
                        logs.log("audit_dropped", level="error", act=act, reason=str(exc))
                        break
                    await trio.sleep(0.2)
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()
