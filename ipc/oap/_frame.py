"""``Frame``: one OAP/1 frame as a small frozen value.

A ``Frame`` always holds the *logical* payload: for a ``COMP`` frame that is the uncompressed
bytes (the codec compresses on encode and inflates on decode). Constructing a ``Frame`` checks
every field's range, so an out-of-range value can never reach the wire.
"""

from __future__ import annotations

import attrs

from ._constants import KNOWN_FLAGS, RESERVED_FLAGS, U16_MAX, U64_MAX, U128_MAX
from ._errors import OapError


@attrs.frozen(kw_only=True, repr=False)
class Frame:
    """One OAP/1 frame (keyword-only). Fields are validated; invalid values raise ``OapError``.

    ``ver`` is a u8 (only 1 can be encoded), ``flags``/``code``/``app_proto_id`` are u16 with
    the reserved flag bits 0x0100-0x8000 clear, ``tenant_id`` a u128, ``corr_id`` a u64, ``cap``
    at most 65,535 bytes. Sizes against ``max_frame`` are the codec's business, not the value's.
    """

    ver: int = 1
    flags: int
    code: int = 0
    app_proto_id: int = 0
    tenant_id: int = 0
    corr_id: int = 0
    cap: bytes = b""
    payload: bytes = b""

    def __attrs_post_init__(self) -> None:
        flags = self.flags
        if type(flags) is not int and isinstance(flags, int) and not isinstance(flags, bool):
            flags = int(flags)  # store Flags members as plain ints: one type on both sides
            object.__setattr__(self, "flags", flags)
        # One expression on the common path (this runs for every frame built locally); the
        # slow path below only runs to name what is wrong.
        if not (
            type(self.ver) is int
            and type(flags) is int
            and type(self.code) is int
            and type(self.app_proto_id) is int
            and type(self.tenant_id) is int
            and type(self.corr_id) is int
            and type(self.cap) is bytes
            and type(self.payload) is bytes
            and 0 <= self.ver <= 0xFF
            and 0 <= flags <= KNOWN_FLAGS
            and 0 <= self.code <= U16_MAX
            and 0 <= self.app_proto_id <= U16_MAX
            and 0 <= self.tenant_id <= U128_MAX
            and 0 <= self.corr_id <= U64_MAX
            and len(self.cap) <= U16_MAX
        ):
            self._explain()

    def _explain(self) -> None:
        for name, value, top in (
            ("ver", self.ver, 0xFF),
            ("flags", self.flags, U16_MAX),
            ("code", self.code, U16_MAX),
            ("app_proto_id", self.app_proto_id, U16_MAX),
            ("tenant_id", self.tenant_id, U128_MAX),
            ("corr_id", self.corr_id, U64_MAX),
        ):
            if type(value) is not int or not 0 <= value <= top:
                raise OapError("field_range", f"{name}={value!r:.40} is not an int in 0..{top}")
        if self.flags & RESERVED_FLAGS:
            raise OapError("reserved_flags", f"flags=0x{self.flags:04x} sets reserved bits")
        if type(self.cap) is not bytes or type(self.payload) is not bytes:
            raise OapError("field_range", "cap and payload must be bytes")
        raise OapError("field_range", f"cap is {len(self.cap)} bytes, at most {U16_MAX}")

    def __repr__(self) -> str:
        # Payloads can be a megabyte: show sizes, not contents.
        return (
            f"Frame(flags=0x{self.flags:04x}, ver={self.ver}, code={self.code}, "
            f"app_proto_id={self.app_proto_id}, tenant_id={self.tenant_id}, "
            f"corr_id={self.corr_id}, cap=<{len(self.cap)} bytes>, "
            f"payload=<{len(self.payload)} bytes>)"
        )


_set = object.__setattr__


def trusted_frame(
    ver: int,
    flags: int,
    code: int,
    app_proto_id: int,
    tenant_id: int,
    corr_id: int,
    cap: bytes,
    payload: bytes,
) -> Frame:
    """Build a ``Frame`` without re-validating: for the decoder, whose header checks and
    fixed-width struct fields already guarantee every range. Not for other callers."""
    frame = object.__new__(Frame)
    _set(frame, "ver", ver)
    _set(frame, "flags", flags)
    _set(frame, "code", code)
    _set(frame, "app_proto_id", app_proto_id)
    _set(frame, "tenant_id", tenant_id)
    _set(frame, "corr_id", corr_id)
    _set(frame, "cap", cap)
    _set(frame, "payload", payload)
    return frame
