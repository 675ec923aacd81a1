"""Typed OAP/1 payloads: small frozen values carried as msgpack maps, parsed strictly.

Strict means: the top level must be a map, every required key present, no unknown key, every
value of exactly the declared msgpack type (no ``"5"`` for 5, no ``true`` for 1, no string for a
list). Any violation is ``OapError`` 422 ``schema_invalid``; a DATA chunk over 64 KiB is 413
``chunk_too_large``. Constructing a value locally runs the same checks.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
import msgpack

from ipc import convert, ids
from ipc.plain import AnyField

from ._constants import CHUNK, HEADER_LEN, U64_MAX
from ._errors import OapError


def _bad(what: str) -> OapError:
    return OapError("schema_invalid", what)


def _obj_id(_inst: object, attr: AnyField, value: object) -> None:
    if type(value) is not str or not ids.is_id(value):
        raise _bad(f"{attr.name} must be 'b3:' + 64 lowercase hex, not {value!r:.80}")


def _uint(low: int, high: int = U64_MAX) -> Any:
    def check(_inst: object, attr: AnyField, value: object) -> None:
        if type(value) is not int or not low <= value <= high:
            raise _bad(f"{attr.name} must be an int in {low}..{high}, not {value!r:.40}")

    return check


def _opt_uint(_inst: object, attr: AnyField, value: object) -> None:
    if value is not None and (type(value) is not int or not 0 <= value <= U64_MAX):
        raise _bad(f"{attr.name} must be a non-negative int or absent, not {value!r:.40}")


def _text(nonempty: bool) -> Any:
    def check(_inst: object, attr: AnyField, value: object) -> None:
        if type(value) is not str or (nonempty and not value):
            raise _bad(f"{attr.name} must be a {'non-empty ' if nonempty else ''}string")

    return check


def _str_tuple(_inst: object, attr: AnyField, value: object) -> None:
    if type(value) is not tuple or any(type(item) is not str for item in value):
        raise _bad(f"{attr.name} must be a list of strings")


def _as_tuple(value: object) -> object:
    # Accept a list from callers, store an immutable tuple (the value is frozen and hashable).
    return tuple(value) if type(value) is list else value


def _chunk(_inst: object, attr: AnyField, value: object) -> None:
    if type(value) is not bytes:
        raise _bad(f"{attr.name} must be bytes (msgpack bin)")
    if len(value) > CHUNK:
        raise OapError("chunk_too_large", f"DATA chunk of {len(value)} bytes, at most {CHUNK}")


@attrs.frozen
class Hello:
    """HELLO request payload (REQ, app_proto_id 0): an empty map, reserved for growth."""


@attrs.frozen
class HelloResponse:
    """HELLO answer (RESP, code 200): what this end accepts and speaks."""

    max_frame: int = attrs.field(validator=_uint(HEADER_LEN, 0xFFFF_FFFF + 4))
    max_inflight: int = attrs.field(validator=_uint(1))
    features: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_str_tuple)
    transports: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_str_tuple)


def _kind(_inst: object, attr: AnyField, value: object) -> None:
    if value is not None and value not in OBJECT_KINDS:
        raise _bad(f"{attr.name} must be one of {sorted(OBJECT_KINDS)}")


OBJECT_KINDS = frozenset({"raw", "manifest"})


@attrs.frozen
class Start:
    """Opens an object stream: ``obj`` is the content id, ``size`` its total byte count (the
    stored bytes: a manifest's own), ``kind`` what those bytes are (``specs/objects.md``:
    ``raw`` or ``manifest``; left out by a sender from before manifests: raw)."""

    obj: str = attrs.field(validator=_obj_id)
    size: int = attrs.field(validator=_uint(0))
    kind: str | None = attrs.field(default=None, validator=_kind)


@attrs.frozen(repr=False)
class Data:
    """One chunk (<= 64 KiB) of object ``obj`` at byte offset ``off``."""

    obj: str = attrs.field(validator=_obj_id)
    off: int = attrs.field(validator=_uint(0))
    data: bytes = attrs.field(validator=_chunk)

    def __repr__(self) -> str:
        return f"Data(obj={self.obj!r}, off={self.off}, data=<{len(self.data)} bytes>)"


@attrs.frozen
class End:
    """Closes the object stream of ``obj``."""

    obj: str = attrs.field(validator=_obj_id)


@attrs.frozen
class ErrorBody:
    """Payload of an error response: canon ``reason``, human ``detail``, optional retry hint."""

    reason: str = attrs.field(validator=_text(nonempty=True))
    detail: str = attrs.field(validator=_text(nonempty=False))
    retry_after: int | None = attrs.field(default=None, validator=_opt_uint)


PAYLOAD_TYPES: tuple[type, ...] = (Hello, HelloResponse, Start, Data, End, ErrorBody)
"""Every typed payload this module knows."""

T = TypeVar("T")


def pack_payload(obj: object) -> bytes:
    """Serialize a typed payload to its msgpack map."""
    if type(obj) not in PAYLOAD_TYPES:
        raise TypeError(f"not an OAP/1 payload type: {type(obj).__name__}")
    # a field that is None is left out (optional: ``ErrorBody.retry_after``)
    fields = {k: v for k, v in convert.unstructure(obj).items() if v is not None}
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def unpack_payload(cls: type[T], data: bytes) -> T:
    """Parse ``data`` strictly as a ``cls`` payload; any mismatch is ``OapError`` (422/413)."""
    if cls not in PAYLOAD_TYPES:
        raise TypeError(f"not an OAP/1 payload type: {cls.__name__}")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=False)
    except Exception as exc:  # msgpack raises a zoo (ExtraData, FormatError, ValueError, ...)
        raise _bad(f"{cls.__name__}: not one msgpack value ({type(exc).__name__})") from None
    if type(raw) is not dict:
        raise _bad(f"{cls.__name__}: payload must be a map, not {type(raw).__name__}")
    try:  # the one strict converter; our validators' OapErrors (413, 422) pass as they are
        return convert.structure(raw, cls, passthrough=(OapError,))
    except convert.SchemaError as exc:
        raise _bad(f"{cls.__name__}: {exc.message}") from None
