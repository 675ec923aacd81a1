"""Capability checks on the gateway's writes (DESIGN.md §5, §8), verified in this process.

``Guard.check`` runs before a write reads its body: no ``Authorization: Bearer`` → 401
``cap_required`` (with ``WWW-Authenticate: Bearer``); a token that fails its signature, key,
expiry or revocation → 401 ``cap_invalid``; a valid token whose caveat does not allow this write →
403 ``cap_denied`` naming the caveat. The app counts each refusal in
``auth_failures_total{service="svc-gateway",reason}`` and ``rejected_total{reason="unauth"}``;
the token is never logged, only its id may be.

The keys come from svc-passport (``KeyFeed``): polled every ``POLL_S`` with the version last
seen, so a rotation, a revocation or the end of an overlap takes effect here within about that
long, and a poll that changed nothing is one small frame. Until the first key set arrives a
write answers 503 ``unavailable`` (Retry-After 1), never an open door.
"""

from __future__ import annotations

import time

import trio

from ipc import caps, oap
from ipc.commands import CommandClient
from ipc.proto import passport as proto
from ipc.proto.codec import call
from kernel import logs
from kernel.http.asgi import Scope
from services.gateway.errors import GatewayError

__all__ = ["POLL_S", "Guard", "KeyFeed"]

POLL_S = 0.5
_CHALLENGE = ((b"www-authenticate", b'Bearer realm="ron"'),)
_INVALID = ((b"www-authenticate", b'Bearer realm="ron", error="invalid_token"'),)


def _bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class Guard:
    """The write check; ``set_keys`` is fed by ``KeyFeed``. Not thread-safe (the trio thread)."""

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

    def check(self, scope: Scope, op: str, name: str | None, size: int | None) -> caps.Token:
        """The verified token allowing this write, else ``GatewayError`` (see the module doc)."""
        text = _bearer(scope)
        if not text:
            raise GatewayError(
                "cap_required",
                "this write needs a capability token: Authorization: Bearer <token> "
                "(mint one with `ronctl token mint`)",
                headers=_CHALLENGE,
            )
        if self.node_id is None:
            raise GatewayError("unavailable", "the node's keys are not loaded yet", retry_after=1)
        need = caps.Need(op=op, audience=self.node_id, now=time.time(), name=name, size=size)
        try:
            return self._verifier.verify(str(text), need, revoked=self._revoked)
        except caps.CapDenied as exc:
            raise GatewayError("cap_denied", exc.detail) from None
        except caps.CapError as exc:
            raise GatewayError("cap_invalid", exc.detail, headers=_INVALID) from None


class KeyFeed:
    """Keeps a ``Guard`` fed with svc-passport's key set."""

    def __init__(self, client: CommandClient, guard: Guard) -> None:
        self._client = client
        self._guard = guard

    async def poll_once(self) -> bool:
        """One poll; True if svc-passport answered."""
        try:
            keyset = await call(
                self._client, proto.PROTOCOL, proto.Keys(since=self._guard.version), timeout=2.0
            )
        except oap.OapError:
            return False
        if keyset.version != self._guard.version:
            self._guard.set_keys(keyset)
            logs.log("keys_loaded", version=keyset.version, kids=",".join(sorted(keyset.keys)))
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; ``started`` once the first key set is loaded (or after one failed try,
        so the gateway can serve reads while svc-passport is still starting)."""
        await self.poll_once()
        task_status.started()
        while True:
            await trio.sleep(POLL_S)
            await self.poll_once()
