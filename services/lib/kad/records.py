"""The two record kinds, signed by the node they speak for, and how they are checked.

A *provider record* says "node P holds object O, reach it at these addresses, until T"; a *peer
record* says "node N listens at these addresses (version ``seq``), until T". Each carries the
node's raw Ed25519 public key and its signature over the record's canonical bytes (msgpack of a
domain tag and the fields), so any node may relay or cache it and nobody can forge one: the
node id must be the BLAKE3 of that key and the signature must verify.

Guarantees (``check``): a record is refused with one stable reason, the label of
``dht_rejected_total{reason}``: ``oversized`` (more than ``MAX_ADDRS`` addresses or an address
over ``MAX_ADDR`` characters), ``expired`` (``expires`` not after ``now``), ``expiry`` (valid for
longer than ``MAX_VALIDITY`` + ``SKEW``: a record may not claim a slot for a year), ``node_id``
(the key is not the node's), ``signature``. Expiry times are Unix seconds (records travel
between clocks; ``SKEW`` absorbs their drift).
"""

from __future__ import annotations

from typing import Final

import attrs
import blake3
import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_ADDR",
    "MAX_ADDRS",
    "MAX_VALIDITY",
    "REPUBLISH",
    "SKEW",
    "PeerRecord",
    "ProviderRecord",
    "Rejected",
    "Signer",
    "check",
]

MAX_ADDRS: Final = 8
MAX_ADDR: Final = 270  # "[<ipv6>]:port" or a DNS name and port
VALIDITY: Final = 48 * 3600  # seconds a record is valid (the seeds' 48 h)
REPUBLISH: Final = 22 * 3600  # seconds between republications (before two lapse)
MAX_VALIDITY: Final = VALIDITY
SKEW: Final = 3600  # clock drift tolerated between nodes
_PROVIDER_TAG = "ron-dht-provider/1"
_PEER_TAG = "ron-dht-peer/1"


class Rejected(ValueError):
    """A record that must be dropped; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@attrs.frozen(slots=True)
class ProviderRecord:
    key: int  # the object
    provider: int  # the node that holds it
    addrs: tuple[str, ...]
    expires: int
    public: bytes
    sig: bytes

    def signed_bytes(self) -> bytes:
        return _canon(_PROVIDER_TAG, self.key, self.addrs, self.expires)


@attrs.frozen(slots=True)
class PeerRecord:
    node: int
    addrs: tuple[str, ...]
    seq: int
    expires: int
    public: bytes
    sig: bytes

    def signed_bytes(self) -> bytes:
        return _canon(_PEER_TAG, self.node, self.addrs, self.expires, self.seq)


def _canon(tag: str, key: int, addrs: tuple[str, ...], expires: int, *rest: int) -> bytes:
    packed: bytes = msgpack.packb(
        [tag, key.to_bytes(32, "big"), list(addrs), expires, *rest], use_bin_type=True
    )
    return packed


def _key_of_public(public: bytes) -> int:
    return int.from_bytes(blake3.blake3(public).digest(), "big")


def check(record: ProviderRecord | PeerRecord, now: float) -> None:
    """Raise ``Rejected`` unless ``record`` is well-formed, current and signed by its node."""
    if len(record.addrs) > MAX_ADDRS or any(len(a) > MAX_ADDR for a in record.addrs):
        raise Rejected("oversized", f"at most {MAX_ADDRS} addresses of {MAX_ADDR} characters")
    if record.expires <= now:
        raise Rejected("expired")
    if record.expires > now + MAX_VALIDITY + SKEW:
        raise Rejected("expiry", "valid for longer than 48 h")
    node = record.provider if isinstance(record, ProviderRecord) else record.node
    if len(record.public) != 32 or _key_of_public(record.public) != node:
        raise Rejected("node_id", "the key is not the node's")
    try:
        Ed25519PublicKey.from_public_bytes(record.public).verify(record.sig, record.signed_bytes())
    except (InvalidSignature, ValueError):
        raise Rejected("signature") from None


class Signer:
    """Makes this node's records with its identity key (never leaves the process)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node = _key_of_public(self.public)

    def provider(self, key: int, addrs: tuple[str, ...], expires: int) -> ProviderRecord:
        unsigned = ProviderRecord(key, self.node, addrs, expires, self.public, b"")
        return attrs.evolve(unsigned, sig=self._key.sign(unsigned.signed_bytes()))

    def peer(self, addrs: tuple[str, ...], seq: int, expires: int) -> PeerRecord:
        unsigned = PeerRecord(self.node, addrs, seq, expires, self.public, b"")
        return attrs.evolve(unsigned, sig=self._key.sign(unsigned.signed_bytes()))
