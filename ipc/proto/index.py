"""svc-index's protocol (``app_proto_id`` 0x0102) and the name rule: ``specs/storage-protocol.md``.

A bad name is not a schema error: svc-index answers it with 422 ``bad_name`` (``check_name``), so
a name field is a plain string here and the rule runs where the name is used.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

import attrs

from ipc import oap
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import content_id, unsigned

__all__ = [
    "INDEX_PROTO",
    "LIST_MAX",
    "NAME_MAX",
    "NAME_RULE",
    "PROTOCOL",
    "GetName",
    "ListNames",
    "NameList",
    "NameRecord",
    "PutName",
    "SetType",
    "TypeSet",
    "check_media_type",
    "check_name",
]

INDEX_PROTO: Final = 0x0102
NAME_MAX: Final = 255
NAME_RULE: Final = (
    "a name is 1-255 characters of A-Z a-z 0-9 . _ ~ - in segments joined by single '/' "
    "(no leading, trailing or doubled '/', no '.' or '..' segment)"
)
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*")


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid index name, else raise ``OapError("bad_name")``.

    A name is 1..255 characters: segments of ``[A-Za-z0-9._~-]`` joined by single ``/``; no
    leading, trailing or doubled ``/``, and no segment ``.`` or ``..`` (names go into URL paths).
    """
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= NAME_MAX
        or _NAME_RE.fullmatch(name) is None
        or any(seg in (".", "..") for seg in name.split("/"))
    ):
        raise oap.OapError("bad_name", f"{name!r:.80} is not a valid name: {NAME_RULE}")
    return name


TYPE_MAX: Final = 255
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t -~])*"'
_PARAM = rf"[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED})"
_MEDIA_RE: Final = re.compile(rf"{_TOKEN}/{_TOKEN}(?:{_PARAM})*")


def check_media_type(text: object) -> str:
    """``text`` if it is a well-formed media type (RFC 9110 §8.3.1: ``type/subtype`` and
    ``; name=value`` parameters, at most 255 characters), type and subtype lower-cased; else
    ``OapError("bad_type", code=400)``. Why checked: it goes back out as a header."""
    if (
        not isinstance(text, str)
        or not 1 <= len(text) <= TYPE_MAX
        or not text.isascii()
        or _MEDIA_RE.fullmatch(text) is None
    ):
        raise oap.OapError(
            "bad_type",
            f"{text!r:.80} is not a media type (type/subtype[; name=value], e.g. text/html)",
            code=400,
        )
    essence, sep, params = text.partition(";")
    return essence.lower() + sep + params


@attrs.frozen
class NameRecord:
    """A name's current binding; ``version`` counts its updates (the first put is 1); ``type``:
    the media type its content is served with (None: none recorded, guessed from the name;
    left out on the wire then, so an untyped record encodes as before types existed)."""

    name: str
    id: str = attrs.field(validator=content_id)
    version: int = attrs.field(validator=unsigned)
    type: str | None = None


@attrs.frozen
class GetName(Request[NameRecord]):
    OP: ClassVar[str] = "get"
    REPLY: ClassVar[type] = NameRecord
    name: str


@attrs.frozen
class PutName(Request[NameRecord]):
    """Bind ``name`` to ``id``; with ``expect_version`` only if the name is at that version
    (0: it must not exist yet), else 409 ``version_conflict``. ``type``: the media type to
    serve it with; None: the type recorded for ``id`` (``SetType``), if any."""

    OP: ClassVar[str] = "put"
    REPLY: ClassVar[type] = NameRecord
    name: str
    id: str = attrs.field(validator=content_id)
    expect_version: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(unsigned)
    )
    type: str | None = None


@attrs.frozen
class TypeSet:
    id: str
    type: str


@attrs.frozen
class SetType(Request[TypeSet]):
    """Record the media type an object was uploaded with (``PUT /o`` with a Content-Type), for
    the names later pointed at it without a type of their own; the last one set wins."""

    OP: ClassVar[str] = "set_type"
    REPLY: ClassVar[type] = TypeSet
    id: str = attrs.field(validator=content_id)
    type: str


LIST_MAX: Final = 1000


@attrs.frozen
class NameList:
    """Names in order; ``more``: there are more after the last one (ask again with ``after``)."""

    names: tuple[NameRecord, ...] = ()
    more: bool = False


@attrs.frozen
class ListNames(Request[NameList]):
    """The names starting with ``prefix`` and sorting after ``after``, at most ``max``."""

    OP: ClassVar[str] = "list"
    REPLY: ClassVar[type] = NameList
    prefix: str = ""
    after: str = ""
    max: int = attrs.field(default=100, validator=attrs.validators.in_(range(1, LIST_MAX + 1)))


PROTOCOL: Final = ServiceProtocol(
    service="svc-index", app_proto_id=INDEX_PROTO, requests=(GetName, PutName, ListNames, SetType)
)
