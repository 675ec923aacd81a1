"""svc-dht's protocols (``specs/dht.md``): what peers ask over the network, and what the node's
own services and operators ask over IPC.

``PEER`` (``app_proto_id`` 0x0301, over a node's overlay address; svc-overlay relays each
request to svc-dht with the authenticated ``via`` node id and ``ip`` stamped in, whatever the
sender put there): ``ping``, ``find_node``, ``find_providers`` (the providers held and nearer
contacts), ``add_providers`` (a batch of one provider's signed records), ``put_peer`` /
``get_peer``. Every request may carry the sender's own signed peer record (``sender``): that is
how a node that asks also becomes a contact.

``LOCAL`` (0x0302, only on svc-dht's command socket): every ``PEER`` request (as relayed) plus
the node's own lookups (``findprovs``, ``findpeer``), ``provide`` now, the routing ``table``
summary, and ``seed`` (a peer address to join through, ``ronctl peers add``).

Records are signed by the node they speak for (``services.lib.kad.records``): a provider record
on the wire is its key's bytes and signature under one provider's key, addresses and expiry.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc.ids import is_node_id
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import content_id, unsigned

__all__ = [
    "LOCAL",
    "LOCAL_PROTO",
    "MAX_BATCH",
    "PEER",
    "PEER_PROTO",
    "PEER_REQUESTS",
    "AddProviders",
    "Added",
    "FindNode",
    "FindPeer",
    "FindProviders",
    "FindProvs",
    "Found",
    "GetPeer",
    "Nodes",
    "PeerAnswer",
    "PeerFound",
    "Ping",
    "Pong",
    "Provide",
    "Provided",
    "ProvidersAnswer",
    "ProvsFound",
    "PutPeer",
    "Seed",
    "Seeded",
    "SignedPeer",
    "SignedProvider",
    "Table",
    "TableView",
]

PEER_PROTO: Final = 0x0301
LOCAL_PROTO: Final = 0x0302
MAX_BATCH: Final = 2048  # provider records in one add_providers (~200 KiB: far below a frame)
MAX_CONTACTS: Final = 64  # contacts in one answer (k = 20; more is refused as malformed)
MAX_ADDR_TEXT: Final = 360  # an ADDR: a node id, "@", a host of up to 255 and a port


def _id_text(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not (value.startswith(("node:", "b3:")) and len(value.partition(":")[2]) == 64):
        raise ValueError(f"{attr.name}: {value!r:.80} is not a node or object id")


def _node_id(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not (value.startswith("node:") and len(value) == 69):
        raise ValueError(f"{attr.name}: {value!r:.80} is not a node id")


def is_addr(text: str) -> bool:
    """``<node id>@<host>:<port>`` (IPv6 hosts in brackets), port 1..65535."""
    node_id, at, hostport = text.partition("@")
    host, colon, port = hostport.rpartition(":")
    return (
        bool(at and colon and host and port.isdigit() and len(text) <= MAX_ADDR_TEXT)
        and is_node_id(node_id)
        and 0 < int(port) < 65536
    )


def _addrs(_inst: object, attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    if len(value) > MAX_CONTACTS:
        raise ValueError(f"{attr.name}: more than {MAX_CONTACTS} contacts")
    for text in value:
        if not is_addr(text):
            raise ValueError(f"{attr.name}: {text!r:.120} is not <node id>@<host>:<port>")


@attrs.frozen
class SignedPeer:
    """A peer record: ``public`` (raw Ed25519, whose BLAKE3 is the node id), its ``addrs``
    (``host:port``), version ``seq`` (the higher wins), ``expires`` (Unix s), ``sig``."""

    public: bytes
    addrs: tuple[str, ...]
    seq: int = attrs.field(validator=unsigned)
    expires: int = attrs.field(validator=unsigned)
    sig: bytes


@attrs.frozen
class SignedProvider:
    """A provider record of the object asked about: the provider's key, addresses, expiry."""

    public: bytes
    addrs: tuple[str, ...]
    expires: int = attrs.field(validator=unsigned)
    sig: bytes


@attrs.frozen
class Pong:
    node_id: str


@attrs.frozen
class Nodes:
    contacts: tuple[str, ...] = attrs.field(default=(), validator=_addrs)  # ADDRs, nearest first


@attrs.frozen
class ProvidersAnswer:
    providers: tuple[SignedProvider, ...] = ()
    contacts: tuple[str, ...] = attrs.field(default=(), validator=_addrs)


@attrs.frozen
class PeerAnswer:
    record: SignedPeer | None = None
    contacts: tuple[str, ...] = attrs.field(default=(), validator=_addrs)


@attrs.frozen
class Added:
    """How many records were stored (or refreshed) and how many refused (each counted)."""

    stored: int = attrs.field(validator=unsigned)
    refused: int = attrs.field(validator=unsigned)


# -- peer requests: ``sender`` is the asker's own peer record; ``via`` / ``ip`` are stamped by
# -- the relaying svc-overlay (the node id the connection proved, the remote address)


@attrs.frozen
class Ping(Request[Pong]):
    OP: ClassVar[str] = "ping"
    REPLY: ClassVar[type] = Pong
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


@attrs.frozen
class FindNode(Request[Nodes]):
    OP: ClassVar[str] = "find_node"
    REPLY: ClassVar[type] = Nodes
    target: str = attrs.field(validator=_id_text)
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


@attrs.frozen
class FindProviders(Request[ProvidersAnswer]):
    OP: ClassVar[str] = "find_providers"
    REPLY: ClassVar[type] = ProvidersAnswer
    id: str = attrs.field(validator=content_id)
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


@attrs.frozen
class AddProviders(Request[Added]):
    """One provider's records: ``keys[i]`` (32 raw bytes of an object id) signed by ``sigs[i]``;
    at most ``MAX_BATCH``."""

    OP: ClassVar[str] = "add_providers"
    REPLY: ClassVar[type] = Added
    public: bytes
    addrs: tuple[str, ...]
    expires: int = attrs.field(validator=unsigned)
    keys: tuple[bytes, ...] = attrs.field(validator=attrs.validators.max_len(MAX_BATCH))
    sigs: tuple[bytes, ...] = attrs.field(validator=attrs.validators.max_len(MAX_BATCH))
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


@attrs.frozen
class PutPeer(Request[Added]):
    OP: ClassVar[str] = "put_peer"
    REPLY: ClassVar[type] = Added
    record: SignedPeer
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


@attrs.frozen
class GetPeer(Request[PeerAnswer]):
    OP: ClassVar[str] = "get_peer"
    REPLY: ClassVar[type] = PeerAnswer
    node_id: str = attrs.field(validator=_node_id)
    sender: SignedPeer | None = None
    via: str | None = None
    ip: str | None = None


PEER_REQUESTS: Final = (Ping, FindNode, FindProviders, AddProviders, PutPeer, GetPeer)

# -- the node's own requests


@attrs.frozen
class Found:
    node_id: str
    addr: str  # the ADDR to dial: ``node:<hex>@host:port``


@attrs.frozen
class ProvsFound:
    """``complete``: every one of the nearest nodes answered (no providers and complete: the
    network has none; no providers and not complete: some holder may be out of reach)."""

    providers: tuple[Found, ...] = ()
    hops: int = attrs.field(default=0, validator=unsigned)
    complete: bool = True


@attrs.frozen
class FindProvs(Request[ProvsFound]):
    OP: ClassVar[str] = "findprovs"
    REPLY: ClassVar[type] = ProvsFound
    id: str = attrs.field(validator=content_id)
    limit: int = attrs.field(default=20, validator=attrs.validators.in_(range(1, 65)))


@attrs.frozen
class PeerFound:
    node_id: str
    addr: str
    hops: int = attrs.field(validator=unsigned)


@attrs.frozen
class FindPeer(Request[PeerFound]):
    """The address of ``node_id``; 404 ``node_unknown`` when no lookup finds it in time."""

    OP: ClassVar[str] = "findpeer"
    REPLY: ClassVar[type] = PeerFound
    node_id: str = attrs.field(validator=_node_id)


@attrs.frozen
class Provided:
    nodes: int = attrs.field(validator=unsigned)  # the nodes that stored the record


@attrs.frozen
class Provide(Request[Provided]):
    OP: ClassVar[str] = "provide"
    REPLY: ClassVar[type] = Provided
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class TableView:
    """``ronctl dht table --json`` and ``GET /dht``."""

    node_id: str
    contacts: int = attrs.field(validator=unsigned)
    buckets: tuple[tuple[int, int], ...]  # (bucket index, contacts), farthest bucket = 255
    records: int = attrs.field(validator=unsigned)
    provider_records: int = attrs.field(validator=unsigned)
    peer_records: int = attrs.field(validator=unsigned)
    providing: int = attrs.field(validator=unsigned)  # objects this node announces
    last_refresh: float  # Unix s of the last bucket refresh (0: none yet)
    last_provide: float  # Unix s of the last sweep (0: none yet)
    lookups_per_minute: float
    hops_p95: float


@attrs.frozen
class Table(Request[TableView]):
    OP: ClassVar[str] = "table"
    REPLY: ClassVar[type] = TableView


@attrs.frozen
class Seeded:
    node_id: str


@attrs.frozen
class Seed(Request[Seeded]):
    """Join through ``addr`` (``ronctl peers add``): pinged, added as a contact, then a lookup
    of our own id; 503 when it does not answer."""

    OP: ClassVar[str] = "seed"
    REPLY: ClassVar[type] = Seeded
    addr: str = attrs.field(validator=lambda _i, a, v: _addrs(_i, a, (v,)))


PEER: Final = ServiceProtocol(service="svc-dht", app_proto_id=PEER_PROTO, requests=PEER_REQUESTS)
LOCAL: Final = ServiceProtocol(
    service="svc-dht",
    app_proto_id=LOCAL_PROTO,
    requests=(*PEER_REQUESTS, FindProvs, FindPeer, Provide, Table, Seed),
)
