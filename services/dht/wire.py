"""Records and contacts between their wire shapes (``ipc.proto.dht``) and the DHT core's
(``services.lib.kad``). Nothing here trusts what it converts: a record still goes through
``kad.check`` and a contact only becomes one of ours once it answered us."""

from __future__ import annotations

import blake3

from ipc.proto import dht
from ipc.transport.addr import BadPeerAddr, PeerAddr
from services.lib.kad import Contact, PeerRecord, ProviderRecord, key_of, text_of

__all__ = [
    "addr_of",
    "contact_of",
    "contacts_of",
    "key_of_public",
    "peer_from_wire",
    "peer_to_wire",
    "provider_from_wire",
    "provider_to_wire",
]


def key_of_public(public: bytes) -> int:
    """The node key a raw public key speaks for (any bytes: the check comes later)."""
    return int.from_bytes(blake3.blake3(public).digest(), "big")


def provider_from_wire(key: int, wire: dht.SignedProvider) -> ProviderRecord:
    provider = key_of_public(wire.public)
    return ProviderRecord(key, provider, tuple(wire.addrs), wire.expires, wire.public, wire.sig)


def provider_to_wire(record: ProviderRecord) -> dht.SignedProvider:
    return dht.SignedProvider(record.public, record.addrs, record.expires, record.sig)


def peer_from_wire(wire: dht.SignedPeer) -> PeerRecord:
    node = key_of_public(wire.public)
    return PeerRecord(node, tuple(wire.addrs), wire.seq, wire.expires, wire.public, wire.sig)


def peer_to_wire(record: PeerRecord) -> dht.SignedPeer:
    return dht.SignedPeer(record.public, record.addrs, record.seq, record.expires, record.sig)


def contact_of(addr: str) -> Contact | None:
    """The contact an ADDR names (``node:<hex>@host:port``); None if it is not one."""
    try:
        parsed = PeerAddr.parse(addr)
    except BadPeerAddr:
        return None
    return Contact(key_of(parsed.node_id), parsed.host, parsed.port)


def contacts_of(addrs: tuple[str, ...], limit: int) -> list[Contact]:
    """The valid contacts among the first ``limit`` ADDRs of an answer."""
    found = (contact_of(a) for a in addrs[:limit])
    return [c for c in found if c is not None]


def addr_of(node: int, hostport: str) -> str:
    """The ADDR of ``node`` at ``host:port`` (a record's address)."""
    return f"{text_of(node)}@{hostport}"
