"""What fans the node's events out to ``/events`` subscribers, with a short history.

Each subscriber has its own bounded buffer; a full one loses the event (counted in
``queue_dropped_total{queue="admin_events"}``), so a slow reader never holds up the node. The
history keeps the last ``HISTORY`` events that are not heartbeats (crashes, respawns, acts) for a
dashboard opened late (``/events?history=1``).
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from prometheus_client import Counter

from ipc.plain import Json, JsonObject
from kernel import logs

__all__ = ["EVENTS_BUFFER", "HISTORY", "SUPERVISOR_TOPIC", "EventFanout", "supervisor_logger"]

EVENTS_BUFFER = 256
HISTORY = 128  # < EVENTS_BUFFER: a new subscriber's history always fits its buffer
SUPERVISOR_TOPIC = "kernel.supervisor"  # admin-plane events (not KernelEvents) of the supervisor
SUPERVISOR_EVENTS = frozenset(
    {
        "respawned",
        "restart_scheduled",
        "service_quarantined",
        "service_released",
        "service_held",
        "service_restarting",
        "service_started_by_operator",
        "service_stopped",
        "heartbeat_missed",
    }
)


class EventFanout:
    def __init__(self, dropped: Counter) -> None:
        self._dropped = dropped
        self._subscribers: list[tuple[str, trio.MemorySendChannel[JsonObject]]] = []
        self._history: collections.deque[tuple[str, JsonObject]] = collections.deque(maxlen=HISTORY)

    @asynccontextmanager
    async def subscribe(
        self, topic_prefix: str, history: bool = False
    ) -> AsyncIterator[trio.MemoryReceiveChannel[JsonObject]]:
        """A bounded subscription to events whose topic starts with ``topic_prefix``."""
        send, receive = trio.open_memory_channel[JsonObject](EVENTS_BUFFER)
        if history:  # what happened before the subscriber came (a dashboard opened late)
            for topic, doc in self._history:
                if topic.startswith(topic_prefix):
                    send.send_nowait(doc)  # fits: the history is shorter than the buffer
        entry = (topic_prefix, send)
        self._subscribers.append(entry)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.remove(entry)
            send.close()

    def publish(self, topic: str, doc: JsonObject) -> None:
        """One event to every subscriber of its topic, stamped with the time it was seen."""
        stamped = {"ts": logs.now_iso(), **doc}
        if not (doc.get("type") == "Health" and doc.get("ok")):  # heartbeats are no history
            self._history.append((topic, stamped))
        for prefix, channel in self._subscribers:
            if topic.startswith(prefix):
                try:
                    channel.send_nowait(stamped)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    self._dropped.inc()


def supervisor_logger(fanout: EventFanout, audit: Callable[..., None]) -> Callable[..., None]:
    """The supervisor's log: every line logged; respawns, quarantines and operator acts also on
    /events (``SUPERVISOR_TOPIC``); a quarantine audited (a privileged act of its own)."""

    def log(event: str, **fields: Json) -> None:
        logs.log(event, **fields)
        if event in SUPERVISOR_EVENTS:
            fanout.publish(SUPERVISOR_TOPIC, {"type": "Supervisor", "event": event, **fields})
        if event == "service_quarantined":
            audit("quarantine", service=fields.get("service"), reason=fields.get("reason"))

    return log
