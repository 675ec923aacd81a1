"""A simulated network running ``services/lib/kad`` unchanged (``bench/dht.py --sim``).

Every node has a real ``RoutingTable`` (filled as a long-running network's would be: up to
``k`` random members of each bucket's range, through ``RoutingTable.seen``) and lookups are real
``Lookup`` state machines, driven by a discrete-event clock: a query to a live node is answered
after that pair's round trip (log-normal, median ``rtt_ms``, per pair), a lost or unanswered
one fails at ``timeout``; ``next_queries`` is consulted at every answer and at every hedge
deadline, as svc-dht does. The transport is TCP, so a lost message (``loss``, each way) costs a
retransmission timeout (``max(200 ms, 2 RTT)``) and fails only if that passes ``timeout``; a
node gone without notice fails every query at ``timeout``.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.lib.kad import Contact, Lookup, RoutingTable
from services.lib.kad.keyspace import BITS


@dataclass
class Outcome:
    hops: int
    ms: float
    messages: int
    ok: bool


@dataclass
class Network:
    size: int
    k: int = 20
    alpha: int = 3
    rtt_ms: float = 60.0
    rtt_sigma: float = 0.6
    loss: float = 0.01
    timeout: float = 1.0
    hedge_delay: float = 0.25
    seed: int = 1
    keys: list[int] = field(default_factory=list)
    tables: dict[int, RoutingTable] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)
    holders: dict[int, set[int]] = field(default_factory=dict)  # object -> nodes with a record

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.keys = sorted(self.rng.getrandbits(BITS) for _ in range(self.size))
        self.contacts = {
            key: Contact(key, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7000)
            for i, key in enumerate(self.keys)
        }
        for key in self.keys:
            self.tables[key] = self._table(key)

    def _table(self, own: int) -> RoutingTable:
        table = RoutingTable(own, k=self.k)
        for bucket in range(BITS):
            low = ((own >> bucket) ^ 1) << bucket
            lo = bisect.bisect_left(self.keys, low)
            hi = bisect.bisect_left(self.keys, low + (1 << bucket))
            if hi - lo == 0:
                continue
            picks = range(lo, hi) if hi - lo <= self.k else self.rng.sample(range(lo, hi), self.k)
            for i in picks:
                table.seen(self.contacts[self.keys[i]], 0.0)
        return table

    def churn(self, share: float) -> None:
        """``share`` of the nodes gone without notice (their contacts stay in every table)."""
        self.dead = set(self.rng.sample(self.keys, int(self.size * share)))

    def alive(self) -> list[int]:
        return [k for k in self.keys if k not in self.dead]

    def rtt(self, a: int, b: int) -> float:
        digest = hashlib.blake2b(f"{min(a, b)}:{max(a, b)}".encode(), digest_size=8).digest()
        u = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)
        z = math.sqrt(2) * _erfinv(2 * u - 1)
        return self.rtt_ms / 1000 * math.exp(self.rtt_sigma * z)

    def nearest_alive(self, target: int, n: int) -> list[int]:
        return heapq.nsmallest(
            n, (k for k in self.keys if k not in self.dead), key=lambda k: k ^ target
        )

    def lookup(
        self,
        source: int,
        target: int,
        *,
        want: int = 0,
        k: int | None = None,
        answer: Callable[[int, int], Sequence[Contact]] | None = None,
    ) -> tuple[Lookup, Outcome]:
        """One lookup from ``source``: its state machine and what it cost."""
        k = k or self.k
        table = self.tables[source]
        lk = Lookup(
            target,
            table.closest(target, k),
            own=source,
            k=k,
            alpha=self.alpha,
            hedge_delay=self.hedge_delay,
            want=want,
        )
        events: list[tuple[float, int, str, int]] = []
        seq = 0
        now = 0.0

        def send(now: float) -> None:
            nonlocal seq
            for contact in lk.next_queries(now):
                q = contact.key
                rtt = self.rtt(source, q)
                # TCP: a lost segment (either way) costs a retransmission timeout, not the answer
                lost = (self.rng.random() < self.loss) + (self.rng.random() < self.loss)
                late = rtt + lost * max(0.2, 2 * rtt)
                if q in self.dead or late >= self.timeout:
                    heapq.heappush(events, (now + self.timeout, seq, "fail", q))
                else:
                    heapq.heappush(events, (now + late, seq, "answer", q))
                seq += 1
                heapq.heappush(events, (now + self.hedge_delay, seq, "tick", q))
                seq += 1

        send(now)
        while events and not lk.done:
            now, _, kind, q = heapq.heappop(events)
            if kind == "answer":
                values = 1 if want and q in self.holders.get(target, ()) else 0
                nearer = answer(q, target) if answer else self.tables[q].closest(target, self.k)
                lk.answered(q, nearer, values=values)
            elif kind == "fail":
                lk.failed(q)
            send(now)
        ok = lk.found >= want if want else bool(lk.result()) and lk.result()[0].key == target
        return lk, Outcome(lk.hops, now * 1000, lk.sent, ok)


def _erfinv(y: float) -> float:
    """Inverse error function (Giles' approximation; plenty for a simulated RTT)."""
    w = -math.log((1.0 - y) * (1.0 + y))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        for c in (
            3.43273939e-07,
            -3.5233877e-06,
            -4.39150654e-06,
            0.00021858087,
            -0.00125372503,
            -0.00417768164,
            0.246640727,
            1.50140941,
        ):
            p = c + p * w
    else:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        for c in (
            0.000100950558,
            0.00134934322,
            -0.00367342844,
            0.00573950773,
            -0.0076224613,
            0.00943887047,
            1.00167406,
            2.83297682,
        ):
            p = c + p * w
    return p * y
