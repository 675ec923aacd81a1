"""svc-mailbox's settings (``[services.settings]``), checked when the node's config loads."""

from __future__ import annotations

import attrs

from ipc.plain import AnyField
from ipc.proto.mailbox import MAX_VISIBILITY
from services.mailbox.store import Policy

__all__ = ["MailboxSettings"]


def _positive(_inst: object, attr: AnyField, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0")


def _visibility(_inst: object, attr: AnyField, value: float) -> None:
    if not 0 < value <= MAX_VISIBILITY:
        raise ValueError(f"{attr.name} must be in (0, {MAX_VISIBILITY:.0f}] seconds")


@attrs.frozen
class MailboxSettings:
    """The semantics users know from SQS and JetStream, with finite defaults (DESIGN.md §5).

    ``visibility``: seconds a received message stays hidden unless the receive says otherwise;
    ``max_deliver``: deliveries before a message goes to the dead-letter queue (finite on
    purpose: JetStream's unlimited default redelivers a poison message forever);
    ``dedup_window``: seconds an Idempotency-Key is remembered; ``retention``: seconds a message
    (or dead letter, or outbox entry) is kept; ``max_messages`` / ``max_bytes``: the node's
    quota over all mailboxes and the outbox, ``mailbox_max_messages`` / ``mailbox_max_bytes``
    one mailbox's (over either: 507); ``retry_base`` / ``retry_max``: seconds of the outbox's
    jittered exponential backoff towards a node that does not accept; ``depth_labels``: how
    many mailboxes ``mailbox_depth{mailbox}`` names (the rest are summed as ``_other``);
    ``max_mailboxes`` / ``mailboxes_per_owner``: mailboxes holding messages at once, in all
    and made by one token (or one tenant: all its tokens) (one more: 507)."""

    visibility: float = attrs.field(default=30.0, validator=_visibility)
    max_deliver: int = attrs.field(default=5, validator=_positive)
    dedup_window: float = attrs.field(default=300.0, validator=_positive)
    retention: float = attrs.field(default=4 * 86400.0, validator=_positive)
    max_messages: int = attrs.field(default=1_000_000, validator=_positive)
    max_bytes: int = attrs.field(default=1 << 30, validator=_positive)
    mailbox_max_messages: int = attrs.field(default=100_000, validator=_positive)
    mailbox_max_bytes: int = attrs.field(default=256 << 20, validator=_positive)
    retry_base: float = attrs.field(default=0.5, validator=_positive)
    retry_max: float = attrs.field(default=60.0, validator=_positive)
    depth_labels: int = attrs.field(default=32, validator=_positive)
    max_mailboxes: int = attrs.field(default=10_000, validator=_positive)
    mailboxes_per_owner: int = attrs.field(default=1_000, validator=_positive)

    def policy(self) -> Policy:
        return Policy(
            visibility=self.visibility,
            max_deliver=self.max_deliver,
            dedup_window=self.dedup_window,
            retention=self.retention,
            max_messages=self.max_messages,
            max_bytes=self.max_bytes,
            mailbox_max_messages=self.mailbox_max_messages,
            mailbox_max_bytes=self.mailbox_max_bytes,
            max_mailboxes=self.max_mailboxes,
            mailboxes_per_owner=self.mailboxes_per_owner,
        )
