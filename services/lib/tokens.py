"""The write check every verifying service runs (gateway, overlay; mailbox next), in-process.

``TokenGate.verify(text, op, name, size)`` returns the verified ``caps.Token`` or raises
``caps.CapDenied`` (valid, but a caveat does not allow this write), ``caps.CapError`` (bad
signature, unknown key, expired, revoked, wrong audience) or ``KeysNotLoaded`` (no key set yet:
refuse, never an open door). The key set comes from svc-passport through ``kernel.key_feed``.
Tokens are never logged by this module.
"""

from __future__ import annotations

import time

import trio

from ipc import caps
from ipc.proto import passport as proto

__all__ = ["KEY_WAIT", "KeysNotLoaded", "TokenGate"]

# how long a write waits for the first key set (a service just started, or a spare just live,
# whose first poll of svc-passport is on its way) before it is refused 503
KEY_WAIT = 1.0


class KeysNotLoaded(Exception):
    """No key set from svc-passport yet."""


class TokenGate:
    """Not thread-safe: one event loop feeds and asks it."""

    def __init__(self) -> None:
        self._verifier = caps.Verifier({})
        self._revoked: frozenset[bytes] = frozenset()
        self.node_id: str | None = None  # None until the first key set: writes are refused
        self.version = 0
        self._loaded = trio.Event()

    def set_keys(self, keyset: proto.KeySet) -> None:
        self._verifier.set_keys(keyset.keys)
        self._revoked = frozenset(keyset.revoked)
        self.node_id = keyset.node_id
        self.version = keyset.version
        self._loaded.set()

    async def wait_loaded(self, timeout: float = KEY_WAIT) -> None:
        """Return once the first key set is here, or after ``timeout`` (``verify`` then refuses
        with ``KeysNotLoaded``). At once in the steady state. Why: a service is ready before its
        first poll of svc-passport has come back (a respawn must not wait a round trip to a
        busy process), so the first writes wait for it instead of being refused."""
        if self.node_id is None:
            with trio.move_on_after(timeout):
                await self._loaded.wait()

    def verify(self, text: str, op: str, name: str | None, size: int | None) -> caps.Token:
        if self.node_id is None:
            raise KeysNotLoaded("the node's keys are not loaded yet")
        need = caps.Need(op=op, audience=self.node_id, now=time.time(), name=name, size=size)
        return self._verifier.verify(text, need, revoked=self._revoked)
