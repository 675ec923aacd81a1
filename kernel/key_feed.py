"""Keeps a service's ``TokenGate`` (``services.lib.tokens``) fed with the identity service's keys.

A long poll (``Keys(since, wait=LONG_POLL_S)``) named after the service: the identity service
answers at once when the set changes (a rotation, a revocation, the end of an overlap), so a
change takes effect in about a round trip; an unchanged set costs one small frame per
``LONG_POLL_S``. Each poll's ``since`` tells the identity service which version this verifier
applied: a revocation answers only once every verifier has applied it.

Guarantees: ``set_keys`` runs before the next poll is sent (so the ack is true); the gap between
two polls never exceeds ``LONG_POLL_S + CALL_SLACK`` (or ``RETRY_S`` after a failure), which is
what the identity service's liveness window relies on.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import passport as proto
from ipc.proto.codec import call
from kernel import logs

__all__ = ["LONG_POLL_S", "KeyFeed"]

LONG_POLL_S = 1.0
CALL_SLACK = 0.8  # a long poll's call timeout is LONG_POLL_S + this (< its LIVE_S)
RETRY_S = 0.2  # after a failed poll (the identity service restarting, busy)


class _Gate(Protocol):
    @property
    def version(self) -> int: ...

    def set_keys(self, keyset: proto.KeySet) -> None: ...


class KeyFeed:
    def __init__(self, client: CommandClient, gate: _Gate, *, verifier: str) -> None:
        self._client = client
        self._gate = gate
        self._verifier = verifier

    async def poll_once(self, wait: float = 0.0) -> bool:
        """One poll (a long one when ``wait`` > 0); True if the identity service answered."""
        request = proto.Keys(since=self._gate.version, verifier=self._verifier, wait=wait)
        try:
            keyset = await call(self._client, proto.PROTOCOL, request, timeout=wait + CALL_SLACK)
        except oap.OapError:
            return False
        if keyset.version != self._gate.version:
            self._gate.set_keys(keyset)
            logs.log("keys_loaded", version=keyset.version, kids=",".join(sorted(keyset.keys)))
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; ``started`` at once: the service does not wait for the identity service
        to be ready or serve (writes wait for the first key set: ``TokenGate.wait_loaded``)."""
        task_status.started()
        await self.poll_once()
        while True:
            if not await self.poll_once(LONG_POLL_S):
                await trio.sleep(RETRY_S)
