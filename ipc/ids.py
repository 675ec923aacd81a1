"""Content ids: ``b3:`` + 64 lowercase hex digits = BLAKE3-256 of the object's bytes; node ids:
``node:`` + 64 lowercase hex digits = BLAKE3-256 of the node's raw Ed25519 public key.

The one place that parses and formats ids, so every service and the gateway agree on the exact
spelling (uppercase hex, other prefixes or lengths are not ids).
"""

from __future__ import annotations

import re
from typing import Final

import blake3

PREFIX: Final = "b3:"
HEX_LEN: Final = 64
_ID_RE: Final = re.compile(r"b3:[0-9a-f]{64}")
NODE_PREFIX: Final = "node:"
_NODE_RE: Final = re.compile(r"node:[0-9a-f]{64}")


class BadId(ValueError):
    """Not a ``b3:<64 lowercase hex>`` content id; ``str()`` says why in one line."""


def is_id(text: object) -> bool:
    """True if ``text`` is a well-formed content id."""
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def parse_id(text: object) -> str:
    """Return the 64 hex digits of ``text``, or raise ``BadId``."""
    if not is_id(text):
        shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
        raise BadId(f"{shown} is not a content id (b3: followed by 64 lowercase hex digits)")
    return str(text)[len(PREFIX) :]


def format_id(digest: bytes) -> str:
    """The id of a 32-byte BLAKE3 digest."""
    if len(digest) != 32:
        raise ValueError(f"a BLAKE3-256 digest is 32 bytes, got {len(digest)}")
    return PREFIX + digest.hex()


def id_of(data: bytes | bytearray | memoryview) -> str:
    """The id of ``data`` (hashed in one call; the blake3 package releases the GIL)."""
    return format_id(blake3.blake3(data).digest())


def node_id_of(public_key: bytes) -> str:
    """``node:`` + BLAKE3-256 hex of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return NODE_PREFIX + blake3.blake3(public_key).hexdigest()


def is_node_id(text: object) -> bool:
    """True if ``text`` is a well-formed node id."""
    return isinstance(text, str) and _NODE_RE.fullmatch(text) is not None
