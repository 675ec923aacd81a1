"""svc-passport's protocol (``app_proto_id`` 0x0103): identity, tokens, keys for verifiers, audit.

Callers: the kernel's control plane (mint, revoke, rotate, audit appends and checks, identity for
``/version``) and every verifying service (``Keys``: the root keys that verify now, the revoked
token ids and this node's id as the audience, versioned so a poll that changed nothing is cheap).
Root keys cross only the node's private IPC sockets (runtime dir 0700, sockets 0600); a token
crosses them only as ``Minted.token``, to the control plane that asked for it.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc.caps import OPS
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import unsigned

__all__ = [
    "MAX_KEYS_WAIT",
    "PASSPORT_PROTO",
    "PROTOCOL",
    "Audit",
    "AuditCheck",
    "AuditReport",
    "Audited",
    "Identity",
    "IdentityReply",
    "KeySet",
    "Keys",
    "Mint",
    "Minted",
    "Revoke",
    "Revoked",
    "Rotate",
    "Rotated",
]

PASSPORT_PROTO: Final = 0x0103
MAX_DETAIL = 16  # keys in an audit record's detail
MAX_KEYS_WAIT = 5.0  # seconds a Keys long poll may wait


def _ops(_inst: object, attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(OPS))
    if unknown or not value:
        raise ValueError(f"{attr.name} must be a non-empty subset of {','.join(OPS)}")


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0, got {value}")


def _wait(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= MAX_KEYS_WAIT:
        raise ValueError(f"{attr.name} must be 0..{MAX_KEYS_WAIT}, got {value}")


@attrs.frozen
class IdentityReply:
    node_id: str
    public_key: bytes


@attrs.frozen
class Identity(Request[IdentityReply]):
    OP: ClassVar[str] = "identity"
    REPLY: ClassVar[type] = IdentityReply


@attrs.frozen
class Minted:
    token: str  # a secret: never logged by anyone who handles it
    id: str  # the token id (hex), what revoke takes
    kid: str
    expires: float


@attrs.frozen
class Mint(Request[Minted]):
    """A token for ``ops`` that expires after ``ttl`` seconds (capped by ``auth.max_ttl``),
    narrowed by ``prefix`` (names it may write), ``max_size`` and ``tenant`` when given."""

    OP: ClassVar[str] = "mint"
    REPLY: ClassVar[type] = Minted
    ops: tuple[str, ...] = attrs.field(validator=_ops)
    ttl: float = attrs.field(validator=_positive)
    prefix: str | None = None
    max_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(unsigned))
    tenant: int | None = attrs.field(default=None, validator=attrs.validators.optional(unsigned))
    caller: str = ""  # who asked (e.g. "uid 1000"), for the audit record


@attrs.frozen
class Revoked:
    """``pending``: verifiers that had not confirmed the new key set when svc-passport stopped
    waiting (empty: every live verifier of the node refuses the token now)."""

    id: str
    already: bool  # it was revoked before
    pending: tuple[str, ...] = ()


@attrs.frozen
class Revoke(Request[Revoked]):
    OP: ClassVar[str] = "revoke"
    REPLY: ClassVar[type] = Revoked
    id: str  # 32 hex digits: the id ``token inspect`` shows
    caller: str = ""


@attrs.frozen
class Rotated:
    kid: str
    previous: str | None
    previous_until: float | None  # the previous key verifies until then (the overlap)


@attrs.frozen
class Rotate(Request[Rotated]):
    OP: ClassVar[str] = "rotate"
    REPLY: ClassVar[type] = Rotated
    caller: str = ""


@attrs.frozen
class KeySet:
    """What a verifier needs; ``version`` changes whenever any of it does."""

    version: int = attrs.field(validator=unsigned)
    node_id: str = ""
    keys: dict[str, bytes] = attrs.field(factory=dict)
    revoked: tuple[bytes, ...] = ()


@attrs.frozen
class Keys(Request[KeySet]):
    """The key set, or only ``KeySet(version=since)`` (empty) when ``since`` is current.

    ``wait``: a long poll: when ``since`` is current, answer once the set changes or after
    ``wait`` seconds (at most ``MAX_KEYS_WAIT``). ``verifier`` names the caller (its service);
    its next poll's ``since`` tells svc-passport which version it has applied, which is how a
    revocation knows when every verifier refuses the token."""

    OP: ClassVar[str] = "keys"
    REPLY: ClassVar[type] = KeySet
    since: int = attrs.field(default=0, validator=unsigned)
    verifier: str = attrs.field(default="", validator=attrs.validators.max_len(64))
    wait: float = attrs.field(default=0.0, validator=_wait)


@attrs.frozen
class Audited:
    seq: int = attrs.field(validator=unsigned)


@attrs.frozen
class Audit(Request[Audited]):
    """Append a privileged act (``reload``, ``release``, ``stop``, ``quarantine`` ...)."""

    OP: ClassVar[str] = "audit"
    REPLY: ClassVar[type] = Audited
    act: str
    detail: dict[str, str] = attrs.field(factory=dict)

    @detail.validator
    def _small(self, attr: attrs.Attribute[dict[str, str]], value: dict[str, str]) -> None:
        if len(value) > MAX_DETAIL or any(len(k) + len(v) > 512 for k, v in value.items()):
            raise ValueError(f"{attr.name}: at most {MAX_DETAIL} short entries")


@attrs.frozen
class AuditReport:
    ok: bool
    records: int = attrs.field(validator=unsigned)
    first_bad: int | None = None
    reason: str = ""


@attrs.frozen
class AuditCheck(Request[AuditReport]):
    OP: ClassVar[str] = "audit_verify"
    REPLY: ClassVar[type] = AuditReport


PROTOCOL: Final = ServiceProtocol(
    service="svc-passport",
    app_proto_id=PASSPORT_PROTO,
    requests=(Identity, Mint, Revoke, Rotate, Keys, Audit, AuditCheck),
)
