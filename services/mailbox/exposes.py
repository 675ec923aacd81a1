"""What svc-mailbox exposes to the node (``kernel.exposes``): the seeds' M3 metrics plus the
outbox's depth, and the ``/outbox`` view."""

from __future__ import annotations

from kernel.exposes import AdminRoute, Exposes, MetricSpec

__all__ = ["EXPOSES"]

EXPOSES = Exposes(
    metrics=(
        MetricSpec("mailbox_sent", "counter", "Messages stored (or queued for another node) once."),
        MetricSpec("mailbox_delivered", "counter", "Deliveries of messages to receivers."),
        MetricSpec("mailbox_acked", "counter", "Messages acked (deleted)."),
        MetricSpec(
            "mailbox_visibility_timeout",
            "counter",
            "Deliveries whose visibility ended without an ack or nack (redelivered).",
        ),
        MetricSpec(
            "mailbox_dlq", "counter", "Messages moved to a dead-letter queue (max_deliver)."
        ),
        MetricSpec(
            "mailbox_depth",
            "gauge",
            "Messages in a mailbox, dead letters excluded (a bounded set of mailbox labels).",
            ("mailbox",),
        ),
        MetricSpec(
            "mailbox_outbox_depth",
            "gauge",
            "Messages waiting in the outbox for another node to accept them.",
        ),
    ),
    # what waits for another node to accept it (no message ids: the TCP plane is open)
    routes=(AdminRoute("/outbox", plane="both", timeout=2.0),),
)
