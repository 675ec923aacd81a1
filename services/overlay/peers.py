"""One configured peer as svc-overlay sees it: its address, its connection, what went through
it, and whether it may be asked at all.

Guarantees: a peer that sent bytes that did not verify ``BAN_AFTER`` times within
``ban_window`` seconds is banned for ``ban_window``: not asked again (fetch by id skips it),
logged once, and shown as ``banned`` in ``ronctl peers``. The record of failures is bounded
(only the last ``BAN_AFTER`` are kept).
"""

from __future__ import annotations

import collections

import attrs
import trio

from ipc.proto import overlay
from ipc.transport import PeerAddr
from ipc.transport.client import PeerClient
from kernel import logs

__all__ = ["BAN_AFTER", "PeerLink"]

BAN_AFTER = 3  # integrity failures within the ban window


@attrs.define
class PeerLink:
    addr: PeerAddr
    ban_window: float = 600.0
    client: PeerClient | None = None
    bytes_in: int = 0
    last_rx: float = -1e9  # trio clock of the last object bytes received from it
    last_error: str = ""
    pq: str = ""  # the last connection's posture: pq, fallback, off
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    _failures: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=BAN_AFTER)
    )
    _banned_until: float = 0.0

    def streaming_within(self, seconds: float) -> bool:
        """Whether it sent object bytes in the last ``seconds``: busy, not gone (a request
        of ours waits behind its other streams to us)."""
        return trio.current_time() - self.last_rx < seconds

    def banned_for(self) -> float:
        """Seconds this peer stays banned (0: it may be asked)."""
        return max(0.0, self._banned_until - trio.current_time())

    def integrity_failure(self, obj_id: str, detail: str) -> None:
        """It sent bytes for ``obj_id`` that did not verify: counted, and banned at the third."""
        now = trio.current_time()
        self._failures.append(now)
        recent = [t for t in self._failures if now - t <= self.ban_window]
        logs.log(
            "peer_integrity_failure",
            level="warning",
            peer=self.addr.node_id,
            id=obj_id,
            reason=detail[:200],
            count=len(recent),
        )
        if len(recent) >= BAN_AFTER and not self.banned_for():
            self._banned_until = now + self.ban_window
            self._failures.clear()
            logs.log(
                "peer_banned",
                level="error",
                peer=self.addr.node_id,
                seconds=self.ban_window,
                reason=f"{BAN_AFTER} integrity failures",
            )

    def state(self) -> str:
        if self.banned_for():
            return "banned"
        if self.client is not None and not self.client.closed.is_set():
            return "connected"
        return "down" if self.last_error else "idle"

    def view(self, *, listed: bool = True) -> overlay.PeerState:
        now = trio.current_time()
        return overlay.PeerState(
            listed=listed,
            node_id=self.addr.node_id,
            addr=str(self.addr),
            state=self.state(),
            bytes_in=self.bytes_in,
            bytes_out=0,
            last_error=self.last_error,
            pq=self.pq,
            integrity_failures=sum(1 for t in self._failures if now - t <= self.ban_window),
            banned_for=round(self.banned_for(), 1),
        )
