"""Capability checks on the gateway's writes (DESIGN.md §5, §8), verified in this process.

``Guard.check`` runs before a write reads its body: no ``Authorization: Bearer`` → 401
``cap_required`` (with ``WWW-Authenticate: Bearer``); a token that fails its signature, key,
expiry or revocation → 401 ``cap_invalid``; a valid token whose caveat does not allow this write →
403 ``cap_denied`` naming the caveat. The app counts each refusal in
``auth_failures_total{service="svc-gateway",reason}`` and ``rejected_total{reason="unauth"}``;
the token is never logged, only its id may be.

The keys come from svc-passport (``kernel.key_feed.KeyFeed``, a long poll), so a
rotation, a revocation or the end of an overlap takes effect here within a round trip (a
revocation answers only once it has). Until
the first key set arrives a write answers 503 ``unavailable`` (Retry-After 1), never an open door.
The verification itself is ``services.lib.tokens.TokenGate``, shared with svc-overlay.
"""

from __future__ import annotations

from ipc import caps
from ipc.proto import passport as proto
from kernel.http.asgi import Scope
from kernel.key_feed import FirstKeys, KeyFeed
from services.gateway.errors import GatewayError
from services.lib.tokens import KeysNotLoaded, TokenGate

__all__ = ["Guard", "KeyFeed"]
_CHALLENGE = ((b"www-authenticate", b'Bearer realm="ron"'),)
_INVALID = ((b"www-authenticate", b'Bearer realm="ron", error="invalid_token"'),)


def _bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class Guard:
    """The gateway's write check over a ``TokenGate`` (fed by ``kernel.key_feed.KeyFeed``)."""

    def __init__(self) -> None:
        self.gate = TokenGate()
        self.first_keys = FirstKeys(self.gate)  # the KeyFeed sets it

    @property
    def version(self) -> int:
        return self.gate.version

    @property
    def node_id(self) -> str | None:
        return self.gate.node_id

    def set_keys(self, keyset: proto.KeySet) -> None:
        self.gate.set_keys(keyset)

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
        try:
            return self.gate.verify(str(text), op, name, size)
        except KeysNotLoaded as exc:
            raise GatewayError("unavailable", str(exc), retry_after=1) from None
        except caps.CapDenied as exc:
            raise GatewayError("cap_denied", exc.detail) from None
        except caps.CapError as exc:
            raise GatewayError("cap_invalid", exc.detail, headers=_INVALID) from None
