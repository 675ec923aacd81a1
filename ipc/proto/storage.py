"""svc-storage's protocol (``app_proto_id`` 0x0101): the contract is ``specs/storage-protocol.md``.

Ids are checked here (``b3:`` + 64 lowercase hex), so a malformed one is ``schema_invalid`` at
decoding; whether a temp name is acceptable is the store's rule (``services.lib.objstore``).
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import content_id, unsigned

__all__ = [
    "PROTOCOL",
    "STORAGE_PROTO",
    "Commit",
    "Put",
    "Quarantine",
    "Quarantined",
    "Stat",
    "StatReply",
    "Stored",
    "Usage",
    "UsageReply",
]

STORAGE_PROTO: Final = 0x0101


@attrs.frozen
class Stored:
    """A durable object: ``created`` is False when the store already held these bytes."""

    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)
    created: bool


@attrs.frozen
class StatReply:
    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)


@attrs.frozen
class Quarantined:
    """``quarantined`` is False when the object verified (or was already gone)."""

    quarantined: bool


@attrs.frozen
class UsageReply:
    bytes: int = attrs.field(validator=unsigned)
    objects: int = attrs.field(validator=unsigned)
    max_bytes: int = attrs.field(validator=unsigned)
    max_objects: int = attrs.field(validator=unsigned)
    max_object_size: int = attrs.field(validator=unsigned)


@attrs.frozen
class Commit(Request[Stored]):
    """Make the temp file ``tmp`` (``size`` bytes hashing to ``id``) a durable object."""

    OP: ClassVar[str] = "commit"
    REPLY: ClassVar[type] = Stored
    tmp: str
    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)


@attrs.frozen
class Put(Request[Stored]):
    """Store ``data`` sent whole (bounded by OAP/1 ``max_frame``)."""

    OP: ClassVar[str] = "put"
    REPLY: ClassVar[type] = Stored
    data: bytes


@attrs.frozen
class Stat(Request[StatReply]):
    OP: ClassVar[str] = "stat"
    REPLY: ClassVar[type] = StatReply
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class Quarantine(Request[Quarantined]):
    """Re-verify ``id``; move it aside if its bytes no longer match it."""

    OP: ClassVar[str] = "quarantine"
    REPLY: ClassVar[type] = Quarantined
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class Usage(Request[UsageReply]):
    OP: ClassVar[str] = "usage"
    REPLY: ClassVar[type] = UsageReply


PROTOCOL: Final = ServiceProtocol(
    service="svc-storage",
    app_proto_id=STORAGE_PROTO,
    requests=(Commit, Put, Stat, Quarantine, Usage),
)
