"""The one 256-bit keyspace of node ids and object ids, and the distance in it.

A node id (``node:<hex>``) and an object id (``b3:<hex>``) are both 32 raw BLAKE3 bytes; the
DHT works on those bytes read as one big-endian unsigned integer (a Python ``int``: XOR and
comparisons on it are the fastest this interpreter offers). The distance of two keys is their
XOR; a contact's bucket is the index of the highest bit in which it differs from us.

Guarantees: ``key_of`` accepts exactly the two id forms (64 lowercase hex digits) and nothing
else; ``text_of`` gives back the id it came from; ``subnet_of`` groups public addresses by /24
(IPv4) or /48 (IPv6) and answers None for loopback, private and link-local ones (no limit
applies: a test network or a LAN is not an attacker's address block).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Final

__all__ = [
    "BITS",
    "NODE_PREFIX",
    "OBJECT_PREFIX",
    "bucket_of",
    "key_of",
    "random_key_in",
    "subnet_of",
    "text_of",
]

BITS: Final = 256
NODE_PREFIX: Final = "node:"
OBJECT_PREFIX: Final = "b3:"
_HEX = frozenset("0123456789abcdef")


def key_of(text: str) -> int:
    """The key of ``node:<hex>`` or ``b3:<hex>``; ``ValueError`` for anything else."""
    for prefix in (NODE_PREFIX, OBJECT_PREFIX):
        if text.startswith(prefix):
            digits = text[len(prefix) :]
            if len(digits) == BITS // 4 and set(digits) <= _HEX:
                return int(digits, 16)
    raise ValueError(f"not a node or object id: {text[:80]!r}")


def text_of(key: int, prefix: str = NODE_PREFIX) -> str:
    """The id text of ``key`` (a node id unless ``prefix`` says ``b3:``)."""
    return f"{prefix}{key:064x}"


def bucket_of(own: int, other: int) -> int:
    """The bucket (0..255) ``other`` belongs to in ``own``'s table; -1 for ``own`` itself."""
    return (own ^ other).bit_length() - 1


def random_key_in(own: int, bucket: int, rng: random.Random) -> int:
    """A random key whose bucket in ``own``'s table is ``bucket`` (a refresh target)."""
    low = rng.getrandbits(bucket) if bucket > 0 else 0
    return own ^ ((1 << bucket) | low)


def subnet_of(host: str) -> str | None:
    """The address block ``host`` counts against (``a.b.c.0/24``, ``x:y:z::/48``); None for
    loopback, private and link-local addresses (no limit), the name itself for a host name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
