"""OAP/1 wire constants (DESIGN.md §4): sizes, flag bits and the header layout.

These numbers are a contract with peers; they live here once and in ``specs/oap-1.md``.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

VERSION: Final = 1
"""The only protocol version this codec speaks."""

MAX_FRAME: Final = 1_048_576
"""Upper bound of a whole encoded frame, the 4-byte ``len`` field included."""

HEADER_LEN: Final = 37
"""Fixed header: ``len`` (4) + ver, flags, code, app_proto_id, tenant_id, cap_len, corr_id (33)."""

CHUNK: Final = 65_536
"""Largest ``data`` in one DATA payload (an object stream chunk, not a frame)."""

INFLATE_RATIO: Final = 8
"""A COMP payload may inflate to at most this many times its compressed size."""

APP_PROTO_HELLO: Final = 0
"""``app_proto_id`` of the HELLO exchange."""

U16_MAX: Final = 0xFFFF
U64_MAX: Final = (1 << 64) - 1
U128_MAX: Final = (1 << 128) - 1


class Flags(enum.IntFlag):
    """Flag bits of the ``flags`` header field. Bits 0x0100-0x8000 are reserved and must be 0."""

    REQ = 0x0001
    RESP = 0x0002
    EVENT = 0x0004
    START = 0x0008
    END = 0x0010
    ACK_REQ = 0x0020
    COMP = 0x0040
    APP_E2E = 0x0080


REQ: Final = Flags.REQ
RESP: Final = Flags.RESP
EVENT: Final = Flags.EVENT
START: Final = Flags.START
END: Final = Flags.END
ACK_REQ: Final = Flags.ACK_REQ
COMP: Final = Flags.COMP
APP_E2E: Final = Flags.APP_E2E

KNOWN_FLAGS: Final = 0x00FF
RESERVED_FLAGS: Final = 0xFF00

# len u32 | ver u8 | flags u16 | code u16 | app_proto_id u16 | tenant_id u128 (hi u64, lo u64)
# | cap_len u16 | corr_id u64 -- big-endian, no padding.
HEADER: Final = struct.Struct(">IBHHHQQHQ")
LEN_FIELD: Final = struct.Struct(">I")
LEN_AFTER_FIELD_MIN: Final = HEADER_LEN - 4
"""The smallest legal ``len`` value: the 33 header bytes that follow the field."""

assert HEADER.size == HEADER_LEN
