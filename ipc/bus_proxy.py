"""The bus proxy: runs in the supervisor, forwards every publisher's envelopes to every subscriber.

Not ``zmq.proxy``: we need to count events that nobody is subscribed to
(``bus_no_receivers_total``) and to forward in batches. The XSUB side subscribes to everything so
publishers never filter (they would drop silently before a subscription arrives); the XPUB side
filters per subscriber and, without NODROP, drops for a subscriber whose queue is full, so one slow
subscriber never slows the rest (its receiver counts the gap).
"""

from __future__ import annotations

from pathlib import Path

import trio
import zmq

from ipc import endpoints
from ipc._types import MetricsLike
from ipc.bus import DEFAULT_CAPACITY, Envelope
from ipc.ztrio import TrioSocket

_BATCH = 256


class BusProxy:
    def __init__(
        self,
        runtime_dir: Path,
        *,
        capacity: int = DEFAULT_CAPACITY,
        metrics: MetricsLike | None = None,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._runtime_dir = Path(runtime_dir)
        self._capacity = capacity
        self._metrics = metrics
        self._ctx = ctx or zmq.Context.instance()
        self._prefixes: set[bytes] = set()
        self._receiver_cache: dict[bytes, bool] = {}
        self.forwarded = 0  # events
        self.no_receivers = 0  # events
        self.dropped = 0  # messages

    def _has_receiver(self, topic: bytes) -> bool:
        hit = self._receiver_cache.get(topic)
        if hit is None:
            hit = any(topic.startswith(p) for p in self._prefixes)
            if len(self._receiver_cache) < 1024:
                self._receiver_cache[topic] = hit
        return hit

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind both sides, report started, forward until cancelled."""
        xsub = TrioSocket(self._ctx.socket(zmq.XSUB))
        xpub = TrioSocket(self._ctx.socket(zmq.XPUB))
        try:
            for sock, option in ((xsub, zmq.RCVHWM), (xpub, zmq.SNDHWM)):
                sock.raw.set(option, self._capacity)
                sock.raw.set(zmq.LINGER, 0)
            for sock, endpoint in (
                (xsub, endpoints.bus_in(self._runtime_dir)),
                (xpub, endpoints.bus_out(self._runtime_dir)),
            ):
                sock.raw.bind(endpoint)
                endpoints.secure(endpoint)
            await xsub.send_multipart([b"\x01"])  # subscribe to every publisher, now and later
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._track_subscriptions, xpub)
                nursery.start_soon(self._forward, xsub, xpub)
                task_status.started()
        finally:
            xsub.close()
            xpub.close()

    async def _track_subscriptions(self, xpub: TrioSocket) -> None:
        # Default XPUB reports a prefix's first subscribe and last unsubscribe: a set suffices.
        while True:
            for parts in await xpub.recv_batch(_BATCH):
                msg = parts[0]
                if not msg:
                    continue
                if msg[0] == 1:
                    self._prefixes.add(msg[1:])
                elif msg[0] == 0:
                    self._prefixes.discard(msg[1:])
                self._receiver_cache.clear()

    async def _forward(self, xsub: TrioSocket, xpub: TrioSocket) -> None:
        while True:
            lost = 0
            for parts in await xsub.recv_batch(_BATCH):
                try:
                    env = Envelope.from_parts(parts)
                except ValueError:
                    continue
                if not self._has_receiver(env.topic):
                    lost += env.count
                elif xpub.try_send_multipart(parts):
                    self.forwarded += env.count
                else:
                    self.dropped += 1
            if lost:
                self.no_receivers += lost
                if self._metrics is not None:
                    self._metrics.bus_no_receivers.inc(lost)
