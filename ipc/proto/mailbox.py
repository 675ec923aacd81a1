"""svc-mailbox's protocol (``app_proto_id`` 0x0104) and the mailbox address rule.

The node's services call it over IPC; svc-overlay relays the same frames from peers and SDK
clients once their token allows it (``specs/mailbox.md``). Every request names one mailbox.

A mailbox is ``name`` (on this node) or ``name@node:<64 hex>`` (on that node: the message goes
through this node's outbox). ``name`` is 1-128 characters of ``A-Z a-z 0-9 . _ ~ -``, not starting
with ``.`` (so never a ``.`` or ``..`` path segment): one URL path segment (``/mb/{mailbox}``).
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

import attrs

from ipc import ids, oap
from ipc.plain import AnyField
from ipc.proto.codec import Request, ServiceProtocol
from ipc.proto.fields import unsigned

__all__ = [
    "KEY_MAX",
    "MAILBOX_PROTO",
    "MAILBOX_RULE",
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_VISIBILITY",
    "MAX_WAIT",
    "PROTOCOL",
    "Ack",
    "Changed",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "DeliveryState",
    "Dlq",
    "Extend",
    "Nack",
    "Outbox",
    "OutboxEntry",
    "OutboxList",
    "Outgoing",
    "Receipt",
    "Receive",
    "Received",
    "Redrive",
    "Redriven",
    "Send",
    "Sent",
    "SentOne",
    "check_mailbox",
    "split_address",
]

MAILBOX_PROTO: Final = 0x0104
MAX_BODY: Final = 1_044_480
"""Largest message body (1020 KiB): with its envelope a message fits one OAP/1 frame (1 MiB),
so it crosses IPC and the overlay whole."""
KEY_MAX: Final = 128
"""Most characters of an Idempotency-Key."""
MAX_BATCH: Final = 256
"""Most messages (or receipts) in one request."""
MAX_VISIBILITY: Final = 12 * 3600.0
MAX_WAIT: Final = 20.0
MAILBOX_RULE: Final = (
    "a mailbox is 1-128 characters of A-Z a-z 0-9 . _ ~ -, not starting with '.', "
    "optionally followed by @node:<64 hex> for a mailbox on another node"
)
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")


def split_address(address: object) -> tuple[str, str | None]:
    """``(name, node id or None)`` of a mailbox address, else ``OapError("bad_name")``."""
    if not isinstance(address, str):
        raise oap.OapError("bad_name", f"{address!r:.80} is not a mailbox: {MAILBOX_RULE}")
    name, at, node = address.partition("@")
    if _NAME_RE.fullmatch(name) is None or name in (".", "..") or (at and not ids.is_node_id(node)):
        raise oap.OapError("bad_name", f"{address!r:.80} is not a mailbox: {MAILBOX_RULE}")
    return name, (node if at else None)


def check_mailbox(address: object) -> str:
    """``address`` if it names a mailbox on this node (no ``@``), else ``bad_name``."""
    name, node = split_address(address)
    if node is not None:
        raise oap.OapError("bad_name", f"{address!r:.80}: only sends may name another node")
    return name


def _visibility(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= MAX_VISIBILITY:
        raise ValueError(f"{attr.name} must be 0..{MAX_VISIBILITY:.0f} seconds, got {value}")


def _batch(_inst: object, attr: AnyField, value: tuple[object, ...]) -> None:
    if not 1 <= len(value) <= MAX_BATCH:
        raise ValueError(f"{attr.name} holds 1..{MAX_BATCH} items, got {len(value)}")


@attrs.frozen
class Outgoing:
    """One message to send. ``key``: the sender's Idempotency-Key (a repeat within the dedup
    window stores nothing and answers the first message's id). ``msg_id``: set only by a node
    that forwards from its outbox (``Send.origin``); a repeat of the same origin's id in the same
    mailbox within the retention stores nothing. Any other sender's ``msg_id`` is 422."""

    body: bytes
    key: str | None = None
    msg_id: str | None = None


@attrs.frozen
class SentOne:
    msg_id: str
    created: bool  # False: a duplicate (same key or msg_id); nothing was stored


@attrs.frozen
class Sent:
    results: tuple[SentOne, ...]


@attrs.frozen
class Send(Request[Sent]):
    """Store ``messages`` in ``mailbox`` durably, in order (one transaction); the reply comes
    after the commit. A mailbox on another node queues them in the outbox (durably) instead."""

    OP: ClassVar[str] = "send"
    REPLY: ClassVar[type] = Sent
    mailbox: str
    messages: tuple[Outgoing, ...] = attrs.field(validator=_batch)
    # The node that forwarded these from its outbox: set only by svc-overlay, from the peer's
    # TLS identity (a client's own is refused). Message ids are that node's, scoped to it.
    origin: str | None = None
    # Whose share of mailboxes a new one counts toward (``caps.owner`` of the verified token),
    # set by the verifier that let the send in (gateway, svc-overlay), never by the client.
    owner: str | None = None


@attrs.frozen
class Delivery:
    msg_id: str
    receipt: str  # valid for this delivery only
    deliveries: int  # 1 on the first delivery
    body: bytes


@attrs.frozen
class Received:
    messages: tuple[Delivery, ...] = ()


@attrs.frozen
class Receive(Request[Received]):
    """Up to ``max`` visible messages, oldest first, hidden for ``visibility`` seconds (None:
    the mailbox default); with ``wait`` > 0 the answer waits that long for a first message."""

    OP: ClassVar[str] = "receive"
    REPLY: ClassVar[type] = Received
    mailbox: str
    max: int = attrs.field(default=1, validator=attrs.validators.in_(range(1, MAX_BATCH + 1)))
    visibility: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_visibility)
    )
    wait: float = attrs.field(
        default=0.0,
        validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(MAX_WAIT)),
    )


@attrs.frozen
class Changed:
    """How many receipts took effect; ``stale`` lists those that belong to no current delivery
    (already acked, redelivered since, or never issued)."""

    count: int = attrs.field(validator=unsigned)
    stale: tuple[str, ...] = ()


@attrs.frozen
class Ack(Request[Changed]):
    """Delete the messages of these deliveries (durable when answered)."""

    OP: ClassVar[str] = "ack"
    REPLY: ClassVar[type] = Changed
    mailbox: str
    receipts: tuple[str, ...] = attrs.field(validator=_batch)


@attrs.frozen
class Nack(Request[Changed]):
    """Give these deliveries back: visible again after ``delay`` seconds."""

    OP: ClassVar[str] = "nack"
    REPLY: ClassVar[type] = Changed
    mailbox: str
    receipts: tuple[str, ...] = attrs.field(validator=_batch)
    delay: float = attrs.field(default=0.0, validator=_visibility)


@attrs.frozen
class Extend(Request[Changed]):
    """Keep these deliveries hidden for ``visibility`` more seconds from now."""

    OP: ClassVar[str] = "extend"
    REPLY: ClassVar[type] = Changed
    mailbox: str
    receipts: tuple[str, ...] = attrs.field(validator=_batch)
    visibility: float = attrs.field(validator=_visibility)


@attrs.frozen
class DeadLetter:
    msg_id: str
    deliveries: int
    sent_at: float  # unix seconds
    body: bytes


@attrs.frozen
class DeadLetters:
    messages: tuple[DeadLetter, ...] = ()


@attrs.frozen
class Dlq(Request[DeadLetters]):
    """The oldest ``max`` messages of the mailbox's dead-letter queue (a read)."""

    OP: ClassVar[str] = "dlq"
    REPLY: ClassVar[type] = DeadLetters
    mailbox: str
    max: int = attrs.field(default=100, validator=attrs.validators.in_(range(1, MAX_BATCH + 1)))


@attrs.frozen
class Redriven:
    count: int = attrs.field(validator=unsigned)


@attrs.frozen
class Redrive(Request[Redriven]):
    """Move up to ``max`` dead letters back to the mailbox's tail with their deliveries reset."""

    OP: ClassVar[str] = "redrive"
    REPLY: ClassVar[type] = Redriven
    mailbox: str
    max: int = attrs.field(
        default=MAX_BATCH, validator=attrs.validators.in_(range(1, MAX_BATCH + 1))
    )


@attrs.frozen
class OutboxEntry:
    msg_id: str
    to: str  # the remote mailbox address, name@node:<hex>
    attempts: int
    next_try: float  # unix seconds
    last_error: str = ""


@attrs.frozen
class OutboxList:
    entries: tuple[OutboxEntry, ...] = ()
    depth: int = 0  # all entries (the list holds at most max)


@attrs.frozen
class Outbox(Request[OutboxList]):
    """The messages waiting to be accepted by another node, oldest first."""

    OP: ClassVar[str] = "outbox"
    REPLY: ClassVar[type] = OutboxList
    max: int = attrs.field(default=100, validator=attrs.validators.in_(range(1, 1001)))


@attrs.frozen
class DeliveryState:
    """Where a message sent from this node is: ``queued`` (in the outbox), ``delivered`` (the
    remote node accepted it durably, at ``at``), ``local`` (stored in a mailbox of this node) or
    ``unknown``."""

    msg_id: str
    state: str
    to: str = ""
    at: float = 0.0


@attrs.frozen
class Receipt(Request[DeliveryState]):
    OP: ClassVar[str] = "receipt"
    REPLY: ClassVar[type] = DeliveryState
    msg_id: str


PROTOCOL: Final = ServiceProtocol(
    service="svc-mailbox",
    app_proto_id=MAILBOX_PROTO,
    requests=(Send, Receive, Ack, Nack, Extend, Dlq, Redrive, Outbox, Receipt),
)
