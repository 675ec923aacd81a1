"""svc-mailbox: store-and-forward messages with the semantics users know from SQS/JetStream.

A send stores a message durably in a mailbox (FIFO); a receive hands out the oldest visible
messages, each hidden for its visibility timeout under a receipt that belongs to that delivery
only; ack deletes, nack gives back (with a delay), extend keeps hidden. A message delivered
``max_deliver`` times without an ack goes to the mailbox's dead-letter queue, listed and
redriven on request. A mailbox on another node (``name@node:<hex>``) is reached through the
outbox, which forwards over svc-overlay until that node accepted the message durably.

Guarantees (``specs/mailbox.md``):
- a reply is sent only after its transaction committed (SQLite WAL, ``synchronous=FULL``;
  many operations per transaction: group commit): an acknowledged send is never lost, an
  acknowledged ack never comes back;
- a send with an Idempotency-Key seen within the dedup window stores nothing and answers the
  first message's id; a forwarded message is deduplicated by its id for the whole retention;
- a stale receipt (acked, redelivered since, or never issued) changes nothing and is reported
  (409 over HTTP); quotas answer 507, a body over ``MAX_BODY`` 413, never a silent drop;
- retention (default 4 days) bounds everything kept, dead letters and the outbox included.
"""

from services.mailbox.exposes import EXPOSES
from services.mailbox.settings import MailboxSettings as Settings

__all__ = ["EXPOSES", "Settings"]
