"""Keeps a service's ``TokenGate`` (``services.lib.tokens``) fed with svc-passport's key set.

Polled every ``POLL_S`` with the version last seen, so a rotation, a revocation or the end of an
overlap takes effect within about that long, and a poll that changed nothing is one small frame.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import passport as proto
from ipc.proto.codec import call
from kernel import logs

__all__ = ["POLL_S", "KeyFeed"]

POLL_S = 0.5


class _Gate(Protocol):
    version: int

    def set_keys(self, keyset: proto.KeySet) -> None: ...


class KeyFeed:
    def __init__(self, client: CommandClient, gate: _Gate) -> None:
        self._client = client
        self._gate = gate

    async def poll_once(self) -> bool:
        """One poll; True if svc-passport answered."""
        try:
            keyset = await call(
                self._client, proto.PROTOCOL, proto.Keys(since=self._gate.version), timeout=2.0
            )
        except oap.OapError:
            return False
        if keyset.version != self._gate.version:
            self._gate.set_keys(keyset)
            logs.log("keys_loaded", version=keyset.version, kids=",".join(sorted(keyset.keys)))
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; ``started`` once the first key set is loaded (or after one failed try,
        so reads are served while svc-passport is still starting)."""
        await self.poll_once()
        task_status.started()
        while True:
            await trio.sleep(POLL_S)
            await self.poll_once()
