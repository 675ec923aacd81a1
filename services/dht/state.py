"""What one svc-dht holds: its routing table, the records it keeps for others, its own signed
peer record, and the counters its metrics and ``GET /dht`` show.

The table and the store are changed only by synchronous code between checkpoints (trio runs
one task at a time), so whoever changes them never interleaves with another writer: the
single-writer rule of DESIGN §5 without a lock.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import attrs

from services.dht.settings import DhtSettings
from services.lib.kad import PeerRecord, RecordStore, RoutingTable, Signer, text_of
from services.lib.kad.records import VALIDITY

__all__ = ["DhtState", "Stats"]


class Stats:
    """Where svc-dht reports what happened (the service wires these to its metrics; tests and
    the simulation leave them silent)."""

    def rejected(self, reason: str) -> None: ...

    def lookup(self, seconds: float, hops: int) -> None: ...

    def repair_bytes(self, n: int) -> None: ...


@attrs.define
class DhtState:
    signer: Signer
    addrs: tuple[str, ...]  # where we are reached: host:port (svc-overlay's address)
    settings: DhtSettings
    stats: Stats = attrs.field(factory=Stats)
    wall: Callable[[], float] = time.time
    table: RoutingTable = attrs.field(init=False)
    store: RecordStore = attrs.field(init=False)
    providing: set[int] = attrs.field(factory=set)  # the objects we announce
    missing: set[int] = attrs.field(factory=set)  # ... that no other node took last time
    last_refresh: float = 0.0
    last_provide: float = 0.0
    lookup_log: collections.deque[tuple[float, int]] = attrs.field(
        factory=lambda: collections.deque(maxlen=1024)  # (wall time, hops) of recent lookups
    )
    _record: PeerRecord | None = None

    def __attrs_post_init__(self) -> None:
        self.table = RoutingTable(self.signer.node, k=self.settings.k)
        self.store = RecordStore(
            max_records=self.settings.max_records, per_source=self.settings.per_source
        )

    @property
    def own(self) -> int:
        return self.signer.node

    @property
    def node_id(self) -> str:
        return text_of(self.own)

    def record(self) -> PeerRecord:
        """Our own peer record, re-signed once it is past half its life (``seq``: microseconds
        of the wall clock, so a restarted node's record replaces its old one)."""
        now = self.wall()
        if self._record is None or self._record.expires - now < VALIDITY / 2:
            self._record = self.signer.peer(self.addrs, int(now * 1e6), int(now) + VALIDITY)
        return self._record

    def looked_up(self, hops: int) -> None:
        self.lookup_log.append((self.wall(), hops))

    def lookups_per_minute(self) -> float:
        now = self.wall()
        return float(sum(1 for t, _ in self.lookup_log if now - t <= 60.0))

    def hops_p95(self) -> float:
        hops = sorted(h for _, h in self.lookup_log)
        return float(hops[min(len(hops) - 1, int(0.95 * len(hops)))]) if hops else 0.0
