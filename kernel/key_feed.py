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

__all__ = ["KEY_WAIT", "LONG_POLL_S", "FirstKeys", "KeyFeed"]

LONG_POLL_S = 1.0
CALL_SLACK = 0.8  # a long poll's call timeout is LONG_POLL_S + this (< its LIVE_S)
RETRY_S = 0.2  # after a failed poll (the identity service restarting, busy)
# how long a write waits for the first poll (a service just started, or a spare just live)
KEY_WAIT = 1.0


class _Keyed(Protocol):
    @property
    def node_id(self) -> str | None: ...  # None until the first key set


class FirstKeys:
    """Set once a service's first poll of the identity service has come back (keys or not).

    Why: a service is ready before that round trip (a respawn must not wait for a busy
    process), so a write that needs a token waits for it here instead of being refused."""

    def __init__(self, gate: _Keyed | None) -> None:
        self._gate = gate  # None: writes are open, nothing to wait for
        self._done = trio.Event()

    def set(self) -> None:
        self._done.set()

    async def wait(self, timeout: float = KEY_WAIT) -> None:
        """Until the gate has keys or the first poll came back (at once in the steady state),
        at most ``timeout``; the gate then verifies with what it has (no keys: refused, 503)."""
        if self._gate is not None and self._gate.node_id is None and not self._done.is_set():
            with trio.move_on_after(timeout):
                await self._done.wait()


class _Gate(Protocol):
    @property
    def version(self) -> int: ...

    def set_keys(self, keyset: proto.KeySet) -> None: ...


class KeyFeed:
    def __init__(
        self,
        client: CommandClient,
        gate: _Gate,
        *,
        verifier: str,
        first: FirstKeys | None = None,
    ) -> None:
        self._client = client
        self._gate = gate
        self._verifier = verifier
        self._first = first

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
        to be ready or serve (writes wait for the first poll: ``FirstKeys``)."""
        task_status.started()
        await self.poll_once()
        if self._first is not None:
            self._first.set()
        while True:
            if not await self.poll_once(LONG_POLL_S):
                await trio.sleep(RETRY_S)
