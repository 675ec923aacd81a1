"""The write check every verifying service runs (gateway, overlay; mailbox next), in-process.

``TokenGate.verify(text, op, name, size)`` returns the verified ``caps.Token`` or raises
``caps.CapDenied`` (valid, but a caveat does not allow this write), ``caps.CapError`` (bad
signature, unknown key, expired, revoked, wrong audience) or ``KeysNotLoaded`` (no key set yet:
refuse, never an open door). The key set comes from svc-passport through ``kernel.key_feed``.
Tokens are never logged by this module.
"""

from __future__ import annotations

import time

from ipc import caps
from ipc.proto import passport as proto

__all__ = ["KeysNotLoaded", "TokenGate"]


class KeysNotLoaded(Exception):
    """No key set from svc-passport yet."""


class TokenGate:
    """Not thread-safe: one event loop feeds and asks it."""

    def __init__(self) -> None:
        self._verifier = caps.Verifier({})
        self._revoked: frozenset[bytes] = frozenset()
        self.node_id: str | None = None  # None until the first key set: writes are refused
        self.version = 0

    def set_keys(self, keyset: proto.KeySet) -> None:
        self._verifier.set_keys(keyset.keys)
        self._revoked = frozenset(keyset.revoked)
        self.node_id = keyset.node_id
        self.version = keyset.version

    def verify(self, text: str, op: str, name: str | None, size: int | None) -> caps.Token:
        if self.node_id is None:
            raise KeysNotLoaded("the node's keys are not loaded yet")
        need = caps.Need(op=op, audience=self.node_id, now=time.time(), name=name, size=size)
        return self._verifier.verify(text, need, revoked=self._revoked)
