"""The kernel bus: a bounded, lossy-but-counted broadcast of KernelEvents between processes.

Shape: every process publishes through an XPUB socket connected to the supervisor's proxy
(XSUB side, ``bus.in``) and subscribes through a SUB socket connected to the proxy's XPUB side
(``bus.out``).

Guarantees (DESIGN.md §3):
- ``publish`` never blocks and never awaits: an event goes into a bounded outbox (``capacity``
  events); a full outbox drops the event and counts it (``bus_dropped_total``).
- A flusher task packs whatever is pending into one zmq message per topic (``Envelope``), so
  throughput grows with load while a lone event still goes out at once.
- Each (publisher, topic) stream carries a sequence number; a receiver that sees a gap counts it
  (``bus_lagged_total`` once per gap, ``bus_receiver_lag_total`` by events missed). A slow
  subscriber loses events at the proxy (its HWM) without slowing anyone else.
- Every event comes with the pid of the process that published it (``recv_with_sender``): the
  publisher id's upper 32 bits are its pid. The supervisor uses it to ignore a ``Health`` that a
  killed process sent just before dying and that arrives after its replacement was started.
- ``connect`` returns only when both paths are live (no slow-joiner loss): the proxy has subscribed
  to our publisher and a probe event we published came back through our own subscription.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import msgpack
import trio
import zmq

from ipc import endpoints, events
from ipc._types import Count, MetricsLike
from ipc.events import KernelEvent
from ipc.ztrio import Message, TrioSocket

DEFAULT_CAPACITY = 4096
MAX_EVENTS_PER_MESSAGE = 256
_SYNC_PREFIX = b"_sync."
_HEADER = struct.Struct(">QQI")  # publisher id, seq of the first event, event count
_SEQ_STREAMS_MAX = 4096  # how many (publisher, topic) streams a receiver remembers


@attrs.frozen
class Envelope:
    """One bus message: ``[topic, header, body]``, body = a msgpack array of event maps."""

    topic: bytes
    publisher: int
    seq: int
    count: int
    body: bytes

    def to_parts(self) -> list[bytes]:
        return [self.topic, _HEADER.pack(self.publisher, self.seq, self.count), self.body]

    @classmethod
    def from_parts(cls, parts: Message) -> Envelope:
        if len(parts) != 3 or len(parts[1]) != _HEADER.size:
            raise ValueError("malformed bus message")
        publisher, seq, count = _HEADER.unpack(parts[1])
        return cls(parts[0], publisher, seq, count, parts[2])


def pack_body(encoded_events: list[bytes]) -> bytes:
    """A msgpack array built from already-encoded items (no re-encoding)."""
    n = len(encoded_events)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return head + b"".join(encoded_events)


@attrs.define
class BusStats:
    """Plain counters of one Bus handle (also mirrored into prometheus metrics when given)."""

    published: int = 0
    dropped: int = 0
    received: int = 0
    lagged: int = 0  # gaps seen
    lag_events: int = 0  # events missed in those gaps
    undecodable: int = 0


class _Metrics:
    """Mirrors counts into the node's prometheus metrics, or nowhere."""

    def __init__(self, metrics: MetricsLike | None) -> None:
        self._m = metrics

    def inc(self, name: str, n: int = 1) -> None:
        if self._m is not None and n:
            counter: Count = getattr(self._m, name)  # one of MetricsLike's bus_* counters
            counter.inc(n)


class Bus:
    """One process's handle on the bus. Create with ``Bus.connect``."""

    def __init__(
        self,
        pub: TrioSocket,
        sub: TrioSocket | None,
        *,
        capacity: int,
        metrics: MetricsLike | None,
    ) -> None:
        if capacity <= 0:
            raise ValueError("bus capacity must be > 0")
        self._pub = pub
        self._sub = sub
        self._capacity = capacity
        self._metrics = _Metrics(metrics)
        # upper half: our pid (what receivers report as the sender); lower half: random, so a
        # reused pid is a new publisher for sequence counting
        self._id = (os.getpid() << 32) | int.from_bytes(os.urandom(4), "big")
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._flush_lot = trio.lowlevel.ParkingLot()
        self._drained_lot = trio.lowlevel.ParkingLot()
        self._seq: dict[bytes, int] = {}
        self._inbox: deque[tuple[KernelEvent, int]] = deque()  # (event, sender pid)
        self._next_seq: dict[tuple[int, bytes], int] = {}
        self.stats = BusStats()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        runtime_dir: Path,
        *,
        topics: Iterable[str] = ("kernel",),
        capacity: int = DEFAULT_CAPACITY,
        metrics: MetricsLike | None = None,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        sync_timeout: float = 10.0,
    ) -> AsyncIterator[Bus]:
        """Join the bus whose proxy serves ``runtime_dir``; subscribe to topic prefixes ``topics``
        (empty: publish only). Raises TimeoutError if the proxy does not answer in time."""
        ctx = ctx or zmq.Context.instance()
        prefixes = [t.encode() for t in topics]
        pub_raw = ctx.socket(zmq.XPUB)
        pub_raw.set(zmq.SNDHWM, capacity)
        pub_raw.set(zmq.XPUB_NODROP, 1)
        pub_raw.set(zmq.LINGER, 0)
        pub = TrioSocket(pub_raw)
        sub: TrioSocket | None = None
        try:
            pub_raw.connect(endpoints.bus_in(runtime_dir))
            if prefixes:
                sub_raw = ctx.socket(zmq.SUB)
                sub_raw.set(zmq.RCVHWM, capacity)
                sub_raw.set(zmq.LINGER, 0)
                sub = TrioSocket(sub_raw)
                sub_raw.connect(endpoints.bus_out(runtime_dir))
                for prefix in prefixes:
                    sub_raw.subscribe(prefix)
            bus = cls(pub, sub, capacity=capacity, metrics=metrics)
            with trio.fail_after(sync_timeout):
                await bus._sync()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(bus._flush_loop)
                try:
                    yield bus
                finally:
                    # Best effort: hand what is pending to zmq before leaving.
                    bus._flush_now()
                    nursery.cancel_scope.cancel()
        finally:
            pub.close()
            if sub is not None:
                sub.close()

    async def _sync(self) -> None:
        """Wait until the proxy subscribed to us, then until our own probe comes back."""
        await self._pub.recv_multipart()  # the proxy's subscribe-all reaches our XPUB
        if self._sub is None:
            return
        probe = _SYNC_PREFIX + self._id.to_bytes(8, "big")
        self._sub.raw.subscribe(probe)
        msg = Envelope(probe, self._id, 0, 0, pack_body([])).to_parts()
        wait = 0.001  # a subscription usually reaches the proxy within a millisecond
        try:
            while True:
                self._pub.try_send_multipart(msg)
                wait = min(wait * 2, 0.05)
                with trio.move_on_after(wait):
                    while True:
                        parts = await self._sub.recv_multipart()
                        if parts[0] == probe:
                            return
                        self._accept(parts)
        finally:
            self._sub.raw.unsubscribe(probe)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, event: KernelEvent) -> bool:
        """Queue ``event`` for every subscriber. Never blocks, never awaits (safe from sync code in
        the trio thread). Returns False when the outbox is full and the event was dropped."""
        if len(self._outbox) >= self._capacity:
            self.stats.dropped += 1
            self._metrics.inc("bus_dropped")
            return False
        self._outbox.append((events.topic_of(event).encode(), events.encode(event)))
        self.stats.published += 1
        self._metrics.inc("bus_published")
        if self._flush_lot:
            self._flush_lot.unpark()
        return True

    def _take_batch(self) -> list[list[bytes]]:
        """Move everything pending into envelopes: one per topic per 256 events, in order."""
        by_topic: dict[bytes, list[bytes]] = {}
        outbox = self._outbox
        while outbox:
            topic, data = outbox.popleft()
            by_topic.setdefault(topic, []).append(data)
        messages = []
        for topic, encoded in by_topic.items():
            for i in range(0, len(encoded), MAX_EVENTS_PER_MESSAGE):
                chunk = encoded[i : i + MAX_EVENTS_PER_MESSAGE]
                seq = self._seq.get(topic, 0)
                self._seq[topic] = seq + len(chunk)
                env = Envelope(topic, self._id, seq, len(chunk), pack_body(chunk))
                messages.append(env.to_parts())
        return messages

    def _flush_now(self) -> None:
        if self._pub.closed:
            return
        for parts in self._take_batch():
            if not self._pub.try_send_multipart(parts):
                break

    async def _flush_loop(self) -> None:
        while True:
            if not self._outbox:
                self._drained_lot.unpark_all()
                await self._flush_lot.park()
                continue
            await self._pub.send_many(self._take_batch())

    async def flushed(self) -> None:
        """Wait until every event published so far has been handed to zmq (not delivered)."""
        while self._outbox:
            await self._drained_lot.park()

    # -- receiving -----------------------------------------------------------------------------

    def _accept(self, parts: Message) -> None:
        if parts[0].startswith(_SYNC_PREFIX):
            return
        try:
            env = Envelope.from_parts(parts)
            items = msgpack.unpackb(env.body)
            decoded = [events.from_wire(item) for item in items]
        except Exception:  # a peer's garbage must not kill the receiver: count it
            self.stats.undecodable += 1
            return
        key = (env.publisher, env.topic)
        expected = self._next_seq.pop(key, None)
        if expected is not None and env.seq > expected:
            missed = env.seq - expected
            self.stats.lagged += 1
            self.stats.lag_events += missed
            self._metrics.inc("bus_lagged")
            self._metrics.inc("bus_receiver_lag", missed)
        if len(self._next_seq) >= _SEQ_STREAMS_MAX:
            del self._next_seq[next(iter(self._next_seq))]
        self._next_seq[key] = env.seq + env.count
        self.stats.received += len(decoded)
        sender = env.publisher >> 32
        self._inbox.extend((event, sender) for event in decoded)

    async def recv(self) -> KernelEvent:
        """The next event on our topics. A checkpoint; cancel-safe (no event is lost)."""
        event, _ = await self.recv_with_sender()
        return event

    async def recv_with_sender(self) -> tuple[KernelEvent, int]:
        """The next event and the pid of the process that published it. Like ``recv``."""
        if self._sub is None:
            raise RuntimeError("this Bus handle was connected with no topics")
        while not self._inbox:
            for parts in await self._sub.recv_batch(64):
                self._accept(parts)
        return self._inbox.popleft()

    def __aiter__(self) -> AsyncIterator[KernelEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[KernelEvent]:
        while True:
            yield await self.recv()
