"""svc-overlay's two protocols: what peers may ask over the network, and what the node's own
services may ask over IPC.

``PEER`` (``app_proto_id`` 0x0201, over TLS from other nodes and SDK clients): ``get`` an object
(answered as a stream: START ``{obj, size}``, DATA ``{obj, off, data}`` chunks of at most 64 KiB,
END ``{obj}``, all with the request's ``corr_id``; or one error frame, 404 ``not_found``) and
``resolve`` a name; frames of svc-mailbox's protocol (0x0104) are relayed to it once a token
(or, for a send forwarded by a configured peer node, that node's pinned identity) allows them.
``LOCAL`` (0x0202, only on the node's private command socket): ``fetch`` an
object from the configured peers into the local store, list ``peers``, ``deliver``
messages to a peer's mailbox (svc-mailbox's outbox), and ``whoami`` (the node id and the
address the listener bound: what svc-dht announces). ``fetch`` is never a
peer operation, so no remote node can make this one fan out to others.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from ipc import oap
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import content_id, unsigned
from ipc.proto.index import NameRecord
from ipc.proto.mailbox import Outgoing, Sent
from ipc.proto.storage import Stored  # the same reply as svc-storage's: durable here

__all__ = [
    "LOCAL",
    "LOCAL_PROTO",
    "PEER",
    "PEER_PROTO",
    "Deliver",
    "Fetch",
    "Fetched",
    "Get",
    "Locate",
    "Located",
    "Me",
    "PeerList",
    "PeerState",
    "Peers",
    "Pq",
    "PqReply",
    "Put",
    "Resolve",
    "Stored",
    "Whoami",
]

PEER_PROTO: Final = 0x0201
LOCAL_PROTO: Final = 0x0202


@attrs.frozen
class Get(Request[oap.Start]):
    """The object ``id``, streamed (START, DATA..., END); every byte verified before it is sent."""

    OP: ClassVar[str] = "get"
    REPLY: ClassVar[type] = oap.Start
    id: str = attrs.field(validator=content_id)


@attrs.frozen
class Put(Request[Stored]):
    """Store the object ``id`` of ``size`` bytes: this REQ|START frame carries the write token in
    its capability segment; DATA frames (REQ, the same corr_id, ``{obj, off, data}``) and an END
    frame follow; the answer comes once the bytes matched ``id`` and svc-storage made them
    durable. 401 ``cap_required`` / 403 ``cap_invalid`` / 403 ``cap_denied`` before any byte is
    stored; 422 ``digest_mismatch`` when the bytes are not ``id``."""

    OP: ClassVar[str] = "put"
    REPLY: ClassVar[type] = Stored
    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)


@attrs.frozen
class Resolve(Request[NameRecord]):
    OP: ClassVar[str] = "resolve"
    REPLY: ClassVar[type] = NameRecord
    name: str


@attrs.frozen
class PqReply:
    """The listener's ``pq.mode``; with ``ct`` (the ML-KEM-768 ciphertext) when it is not off."""

    mode: str
    ct: bytes = b""


@attrs.frozen
class Pq(Request[PqReply]):
    """The dialer's ML-KEM-768 encapsulation key (``ipc.transport.pq``), sent right after HELLO;
    once answered, both ends seal object payloads (APP_E2E) with the derived keys."""

    OP: ClassVar[str] = "pq"
    REPLY: ClassVar[type] = PqReply
    ek: bytes


@attrs.frozen
class Fetched:
    """``done``: the object is now in the local store (durable), fetched from ``peer`` (a node
    id). Not ``done`` (a long poll that ran out of ``wait``): the fetch goes on; ``received``
    bytes so far of ``size`` (0 until a provider announced it); ask again to keep it going."""

    id: str = attrs.field(validator=content_id)
    size: int = attrs.field(validator=unsigned)
    peer: str
    done: bool = True
    received: int = attrs.field(default=0, validator=unsigned)


@attrs.frozen
class Fetch(Request[Fetched]):
    """Fetch ``id`` from the peers into the local store; 404 ``not_found`` only if every peer
    asked said so, 503 ``unavailable`` (+ retry_after) if any could not be reached or timed out,
    507 ``insufficient_storage`` if the object cannot fit. ``wait`` > 0: answer after that many
    seconds at the latest (``done`` false, with the progress), so the caller can tell a fetch
    that moves from one that is stuck; a fetch nobody asks about for a few seconds stops."""

    OP: ClassVar[str] = "fetch"
    REPLY: ClassVar[type] = Fetched
    id: str = attrs.field(validator=content_id)
    wait: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    # where to start among the listed peers (modulo their number; None: by the id), so a
    # caller spreads many fetches evenly (a chunked object's chunks: their index)
    order: int | None = attrs.field(default=None, validator=attrs.validators.optional(unsigned))
    # the object ``id`` is a part of (a chunk's manifest object): a provider that sent a bad
    # part of it is not asked for its other parts
    group: str | None = attrs.field(default=None, validator=attrs.validators.optional(content_id))


@attrs.frozen
class Deliver(Request[Sent]):
    """Send ``messages`` to ``mailbox`` on the peer ``node_id`` (svc-mailbox's outbox): the
    peer's answer, which it gives once they are durable there; 503 ``unavailable`` when the
    peer is not configured or cannot be reached."""

    OP: ClassVar[str] = "deliver"
    REPLY: ClassVar[type] = Sent
    node_id: str
    mailbox: str
    messages: tuple[Outgoing, ...]


@attrs.frozen
class PeerState:
    node_id: str
    addr: str
    # "connected", "idle" (not dialed yet or closed cleanly), "down", "banned" (sent bytes that
    # did not verify too often: not asked again for ``banned_for`` seconds)
    state: str
    pq: str  # the negotiated posture of the last connection: "pq", "fallback", "off" or ""
    bytes_in: int = attrs.field(validator=unsigned)
    bytes_out: int = attrs.field(validator=unsigned)
    last_error: str = ""
    integrity_failures: int = attrs.field(default=0, validator=unsigned)  # in the ban window
    banned_for: float = 0.0
    # "out": a listed peer (overlay.peers, ``ronctl peers add``) or a provider the DHT named,
    # dialed by us; "in": a node connected to us (its address is where it came from)
    direction: str = "out"
    listed: bool = True


@attrs.frozen
class PeerList:
    peers: tuple[PeerState, ...] = ()


@attrs.frozen
class Peers(Request[PeerList]):
    OP: ClassVar[str] = "peers"
    REPLY: ClassVar[type] = PeerList


@attrs.frozen
class Me:
    """This node's id and where svc-overlay listens (``host:port``, the port it really bound)."""

    node_id: str
    addr: str


@attrs.frozen
class Whoami(Request[Me]):
    OP: ClassVar[str] = "whoami"
    REPLY: ClassVar[type] = Me


@attrs.frozen
class Located:
    """``node_id`` can be reached at ``addr``; ``listed``: it is one of the listed peers."""

    node_id: str
    addr: str
    listed: bool


@attrs.frozen
class Locate(Request[Located]):
    """Where ``node_id`` is: a listed peer, else a node the DHT finds (then remembered for
    deliveries); 404 ``node_unknown`` when neither knows it, 503 when the DHT cannot say."""

    OP: ClassVar[str] = "locate"
    REPLY: ClassVar[type] = Located
    node_id: str


PEER: Final = ServiceProtocol(
    service="svc-overlay", app_proto_id=PEER_PROTO, requests=(Get, Resolve, Pq, Put)
)
LOCAL: Final = ServiceProtocol(
    service="svc-overlay",
    app_proto_id=LOCAL_PROTO,
    requests=(Fetch, Peers, Deliver, Whoami, Locate),
)
