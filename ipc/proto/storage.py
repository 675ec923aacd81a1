"""svc-storage's protocol (``app_proto_id`` 0x0101): the contract is ``specs/storage-protocol.md``.

Ids are checked here (``b3:`` + 64 lowercase hex), so a malformed one is ``schema_invalid`` at
decoding; whether a temp name is acceptable is the store's rule (``services.lib.objstore``).
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc import ids
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import content_id, unsigned

__all__ = [
    "GC_MIN_GRACE",
    "LIST_MAX",
    "PROTOCOL",
    "STORAGE_PROTO",
    "Commit",
    "Gc",
    "GcReport",
    "ListObjects",
    "ListPins",
    "ObjectInfo",
    "ObjectList",
    "Pin",
    "PinList",
    "PinReply",
    "Put",
    "Quarantine",
    "Quarantined",
    "Stat",
    "StatReply",
    "Stored",
    "Touch",
    "Touched",
    "Unpin",
    "Usage",
    "UsageReply",
]

STORAGE_PROTO: Final = 0x0101
LIST_MAX: Final = 1000  # the most objects or pins in one page
GC_MIN_GRACE: Final = 60.0
"""The shortest grace window a GC accepts (seconds): it must exceed the time between a name
put's ``touch`` and svc-index's commit of that name (see the GC argument in the spec)."""


def _id_or_empty(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value and not ids.is_id(value):
        raise ValueError(f"{attr.name}: {value!r:.80} is neither empty nor a content id")


_page_max = attrs.validators.in_(range(1, LIST_MAX + 1))


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


OBJECT_KINDS = ("raw", "manifest", "chunk")


@attrs.frozen
class ObjectInfo:
    """One stored object: ``mtime`` (unix seconds) is when it was last written or touched,
    which is what a GC's grace window measures; ``pinned``: a GC never removes it; ``kind``:
    ``raw``, ``manifest`` (``size`` is then the object's, not the manifest's) or ``chunk`` (a
    part of a manifest object, listed only when asked for)."""

    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)
    mtime: float
    pinned: bool
    kind: str = attrs.field(default="raw", validator=attrs.validators.in_(OBJECT_KINDS))


@attrs.frozen
class ObjectList:
    """Objects in id order; ``more``: ask again with ``after`` = the last id."""

    objects: tuple[ObjectInfo, ...] = ()
    more: bool = False


@attrs.frozen
class ListObjects(Request[ObjectList]):
    """The stored objects whose ids sort after ``after`` ("" from the start), at most ``max``;
    the chunks and sub-manifests of manifest objects only with ``chunks``."""

    OP: ClassVar[str] = "list"
    REPLY: ClassVar[type] = ObjectList
    after: str = attrs.field(default="", validator=_id_or_empty)
    max: int = attrs.field(default=100, validator=_page_max)
    chunks: bool | None = None


@attrs.frozen
class Touched:
    """``present``: the object is stored, and its grace window now starts again."""

    id: str = attrs.field(validator=content_id)
    present: bool


@attrs.frozen
class Touch(Request[Touched]):
    """Restart ``id``'s grace window (a name is about to point at it); never creates it."""

    OP: ClassVar[str] = "touch"
    REPLY: ClassVar[type] = Touched
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class PinReply:
    """``pinned``: the state now; ``changed``: False when it already was so."""

    id: str = attrs.field(validator=content_id)
    pinned: bool
    changed: bool


@attrs.frozen
class Pin(Request[PinReply]):
    """Keep ``id`` through every GC until it is unpinned (404 if it is not stored)."""

    OP: ClassVar[str] = "pin"
    REPLY: ClassVar[type] = PinReply
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class Unpin(Request[PinReply]):
    OP: ClassVar[str] = "unpin"
    REPLY: ClassVar[type] = PinReply
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class PinList:
    ids: tuple[str, ...] = ()
    more: bool = False


@attrs.frozen
class ListPins(Request[PinList]):
    """The pinned ids sorting after ``after``, in order, at most ``max``."""

    OP: ClassVar[str] = "pins"
    REPLY: ClassVar[type] = PinList
    after: str = attrs.field(default="", validator=_id_or_empty)
    max: int = attrs.field(default=100, validator=_page_max)


@attrs.frozen
class GcReport:
    """What a GC did (or, with ``dry_run``, would do). Every object it looked at is counted
    once: removed, or kept as pinned, named, young or reached (a chunk or sub-manifest of a kept
    manifest), the first reason that applies. ``removed_chunks``: how many of the removed were
    chunks of removed manifests (``specs/objects.md``)."""

    removed: int = attrs.field(validator=unsigned)
    freed_bytes: int = attrs.field(validator=unsigned)
    kept_pinned: int = attrs.field(validator=unsigned)
    kept_named: int = attrs.field(validator=unsigned)
    kept_young: int = attrs.field(validator=unsigned)
    dry_run: bool
    seconds: float
    kept_reached: int = attrs.field(default=0, validator=unsigned)
    removed_chunks: int = attrs.field(default=0, validator=unsigned)


def _grace(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value >= GC_MIN_GRACE:  # also refuses NaN
        raise ValueError(f"{attr.name} must be at least {GC_MIN_GRACE:g} s, got {value!r}")


@attrs.frozen
class Gc(Request[GcReport]):
    """Remove every object that is not pinned, that no name points at and that was last
    written or touched more than ``grace`` seconds ago."""

    OP: ClassVar[str] = "gc"
    REPLY: ClassVar[type] = GcReport
    grace: float = attrs.field(validator=_grace)
    dry_run: bool = False


PROTOCOL: Final = ServiceProtocol(
    service="svc-storage",
    app_proto_id=STORAGE_PROTO,
    requests=(Commit, Put, Stat, Quarantine, Usage, ListObjects, Touch, Pin, Unpin, ListPins, Gc),
)
