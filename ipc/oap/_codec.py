"""Whole-frame encode/decode and the header checks shared with the streaming decoder.

Pure functions over bytes: no I/O, no state. Every size is checked against ``max_frame`` from the
``len`` field alone, before any byte of the body is copied, and a COMP payload is inflated with a
hard output bound (``zlib.decompressobj`` + ``max_length``), never inflated and then measured.
Header checks run in wire order (len, then ver, flags, cap_len), so a given byte string always
fails with the same reason whether it is decoded whole or fed in pieces.
"""

from __future__ import annotations

import zlib

from ._constants import (
    COMP,
    HEADER,
    HEADER_LEN,
    INFLATE_RATIO,
    LEN_AFTER_FIELD_MIN,
    LEN_FIELD,
    MAX_FRAME,
    RESERVED_FLAGS,
    U64_MAX,
    VERSION,
)
from ._errors import OapError
from ._frame import Frame, trusted_frame

Buffer = bytes | bytearray | memoryview
"""What the decoders accept; nothing is kept by reference (kept bytes are copied)."""

_COMPRESS_LEVEL = 1  # hot path: fast deflate; ratios differ little for typical payloads
_LEN_MAX = 0xFFFF_FFFF


def check_max_frame(max_frame: int) -> int:
    """Return ``max_frame`` if usable (a header fits, ``len`` can express it), else ValueError."""
    if isinstance(max_frame, bool) or not isinstance(max_frame, int):
        raise ValueError(f"max_frame must be an int, not {type(max_frame).__name__}")
    if not HEADER_LEN <= max_frame <= _LEN_MAX + 4:
        raise ValueError(f"max_frame must be in {HEADER_LEN}..{_LEN_MAX + 4}, not {max_frame}")
    return max_frame


def frame_total(buf: Buffer, off: int, max_frame: int) -> int:
    """Read the ``len`` field at ``off`` and return the whole frame's size (``len`` + 4).

    Raises 413 ``frame_too_large`` or 400 ``bad_length`` from these 4 bytes alone, so a peer that
    announces a huge frame is refused before we buffer any of it.
    """
    length: int = LEN_FIELD.unpack_from(buf, off)[0]
    if length + 4 > max_frame:
        raise OapError(
            "frame_too_large", f"frame of {length + 4} bytes exceeds max_frame {max_frame}"
        )
    if length < LEN_AFTER_FIELD_MIN:
        raise OapError(
            "bad_length", f"len={length} is shorter than the {LEN_AFTER_FIELD_MIN}-byte header"
        )
    return length + 4


Header = tuple[int, int, int, int, int, int, int, int, int]


def parse_header(buf: Buffer, off: int, total: int) -> Header:
    """Unpack and check the 37-byte header at ``off`` of a frame of ``total`` bytes."""
    hdr: Header = HEADER.unpack_from(buf, off)
    ver, flags, cap_len = hdr[1], hdr[2], hdr[7]
    if ver != VERSION:
        raise OapError("bad_version", f"version {ver}, this codec speaks {VERSION}")
    if flags & RESERVED_FLAGS:
        raise OapError("reserved_flags", f"flags=0x{flags:04x} sets reserved bits")
    if cap_len > total - HEADER_LEN:
        raise OapError(
            "cap_len_overflow", f"cap_len={cap_len} but only {total - HEADER_LEN} bytes follow"
        )
    return hdr


def inflate(data: Buffer, max_frame: int) -> bytes:
    """Inflate a zlib payload to at most ``min(max_frame, 8 * len(data))`` bytes, else 413.

    The bound is enforced by zlib itself (``max_length``): a compression bomb costs at most
    ``limit + 1`` bytes of output before it is refused.
    """
    limit = min(max_frame, INFLATE_RATIO * len(data))
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise OapError("bad_compression", f"zlib: {exc}") from None
    if len(out) > limit:
        raise OapError(
            "inflate_too_large",
            f"{len(data)} compressed bytes inflate past {limit} "
            f"(limit: max_frame and {INFLATE_RATIO}x compressed)",
        )
    if not inflater.eof:
        raise OapError("bad_compression", "zlib stream is incomplete")
    if inflater.unused_data:
        raise OapError("bad_compression", "bytes follow the end of the zlib stream")
    return out


def build_frame(buf: Buffer, off: int, total: int, hdr: Header, max_frame: int) -> Frame:
    """Turn a complete, header-checked frame at ``off`` into a ``Frame`` (copies the body)."""
    _, ver, flags, code, app_proto_id, t_hi, t_lo, cap_len, corr_id = hdr
    body = off + HEADER_LEN + cap_len
    end = off + total
    if type(buf) is bytes:  # the common case: slicing bytes is one memcpy
        cap = buf[off + HEADER_LEN : body] if cap_len else b""
        raw = memoryview(buf)[body:end] if flags & COMP else None
        payload = buf[body:end] if raw is None else inflate(raw, max_frame)
    else:
        # Released on every path: a live export would stop the caller resizing a bytearray.
        with memoryview(buf) as view:
            cap = view[off + HEADER_LEN : body].tobytes() if cap_len else b""
            if flags & COMP:
                payload = inflate(view[body:end], max_frame)
            else:
                payload = view[body:end].tobytes()
    return trusted_frame(ver, flags, code, app_proto_id, (t_hi << 64) | t_lo, corr_id, cap, payload)


def encode(frame: Frame, *, max_frame: int = MAX_FRAME) -> bytes:
    """Encode ``frame`` into one OAP/1 frame.

    With ``COMP`` set, ``frame.payload`` is the uncompressed payload and is zlib-compressed here.
    Guarantees: the result decodes back to an equal ``Frame`` under the same ``max_frame``.
    Raises ``OapError`` 413 ``frame_too_large`` if the encoding would exceed ``max_frame``,
    413 ``inflate_too_large`` if a COMP payload would break the inflate bound on the receiving
    side (larger than ``max_frame``, or compressing more than 8x), 400 ``bad_version`` unless
    ``ver`` is 1.
    """
    if frame.ver != VERSION:
        raise OapError("bad_version", f"cannot encode version {frame.ver}")
    payload = frame.payload
    if frame.flags & COMP:
        if len(payload) > max_frame:
            raise OapError(
                "inflate_too_large", f"payload of {len(payload)} bytes exceeds max_frame"
            )
        wire = zlib.compress(payload, _COMPRESS_LEVEL)
        if len(payload) > INFLATE_RATIO * len(wire):
            raise OapError(
                "inflate_too_large",
                f"payload compresses more than {INFLATE_RATIO}x; send it without COMP",
            )
        payload = wire
    cap = frame.cap
    total = HEADER_LEN + len(cap) + len(payload)
    if total > max_frame:
        raise OapError("frame_too_large", f"frame of {total} bytes exceeds max_frame {max_frame}")
    tenant = frame.tenant_id
    header = HEADER.pack(
        total - 4,
        VERSION,
        frame.flags,
        frame.code,
        frame.app_proto_id,
        tenant >> 64,
        tenant & U64_MAX,
        len(cap),
        frame.corr_id,
    )
    return b"".join((header, cap, payload))


def decode(data: Buffer, *, max_frame: int = MAX_FRAME) -> Frame:
    """Decode exactly one whole frame from ``data``.

    Raises ``OapError``: 400 ``truncated`` if bytes are missing, 400 ``trailing_bytes`` if bytes
    follow the frame, and every header/body error of the codec (see ``specs/oap-1.md``).
    """
    size = len(data)
    if size < 4:
        raise OapError("truncated", f"{size} bytes, a frame needs at least {HEADER_LEN}")
    total = frame_total(data, 0, max_frame)
    if size < HEADER_LEN:
        raise OapError("truncated", f"{size} bytes, a frame needs at least {HEADER_LEN}")
    hdr = parse_header(data, 0, total)
    if size < total:
        raise OapError("truncated", f"{size} bytes of a {total}-byte frame")
    if size > total:
        raise OapError("trailing_bytes", f"{size - total} bytes follow a {total}-byte frame")
    return build_frame(data, 0, total, hdr, max_frame)
