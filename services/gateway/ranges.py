"""``Range`` and ``If-None-Match`` for immutable objects (RFC 9110 §14, §13.1.2), pure functions.

One range only (what browsers and resumable downloaders send). A header we do not support
(another unit, several ranges) or cannot parse is ignored, as the RFC allows: the whole object is
served with 200. A well-formed single range that misses the object is 416.
"""

from __future__ import annotations

import re

from services.gateway.errors import GatewayError

__all__ = ["etag_matches", "parse_range"]

_SPEC = re.compile(r"bytes=(\d*)-(\d*)")
_MAX_DIGITS = 18  # below 2**63; a longer number is past any object's end (and past int() limits)


def _number(digits: str) -> int | None:
    """The value of a position, or None for "past any end" (too many digits to matter)."""
    digits = digits.lstrip("0") or "0"
    return None if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` to serve, or ``None`` for the whole object.

    Raises ``GatewayError(range_not_satisfiable)`` carrying ``Content-Range: bytes */size``.
    """
    if header is None:
        return None
    m = _SPEC.fullmatch(header.strip().replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # unsupported or malformed: ignore it
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes (N past any end: all of them)
        n = _number(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return (0 if n is None else max(0, size - n)), size
    start = _number(first)
    if start is None or start >= size:
        raise _unsatisfiable(size)
    end_pos = _number(last) if last else None
    if end_pos is not None and end_pos < start:
        return None  # invalid: ignore
    return start, size if end_pos is None else min(end_pos + 1, size)


def _unsatisfiable(size: int) -> GatewayError:
    return GatewayError(
        "range_not_satisfiable",
        f"the object has {size} bytes",
        headers=[(b"content-range", f"bytes */{size}".encode())],
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (weak or strong) or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
