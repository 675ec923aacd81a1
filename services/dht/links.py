"""svc-dht's connections to other nodes (their overlay addresses), kept open for reuse.

Guarantees:

- one connection per node at a time, dialed once however many queries want it at once (a
  lock per node); at most ``max_conns`` are kept: past that the least recently used one is
  closed (a lookup never holds more than ``2 * alpha`` in flight, so this only bounds reuse);
- ``ask`` sends one request with our own peer record as ``sender`` and returns its typed
  reply within ``timeout`` s, or raises ``Unreachable`` (``reason``: the dial's label,
  ``timeout``, ``closed``, or the peer's OAP reason; ``answered``: the peer did answer, with a
  refusal, so it is alive);
- a connection that failed is dropped, so the next ask dials afresh.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TypeVar

import attrs
import trio

from ipc import oap
from ipc.proto import dht
from ipc.proto.codec import Request
from ipc.transport import (
    ChannelClosed,
    DialError,
    Limits,
    Meter,
    NodeCertificate,
    PeerAddr,
    client_context,
)
from ipc.transport.client import PeerClient
from ipc.transport.session import open_session
from services.lib.kad import Contact, text_of

__all__ = ["Links", "Unreachable"]

R = TypeVar("R")


class Unreachable(Exception):
    def __init__(self, reason: str, *, answered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answered = answered


@attrs.define
class _Link:
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    client: PeerClient | None = None


class Links:
    def __init__(
        self,
        cert: NodeCertificate,
        sender: Callable[[], dht.SignedPeer],
        *,
        limits: Limits,
        meter: Meter,
        tls: bool = True,
        pq_mode: str = "off",
        max_conns: int = 64,
    ) -> None:
        self.cert = cert
        # one client context for every dial (building one loads the certificate and key: ms
        # of CPU and a few hundred KiB each)
        self.context = client_context(cert) if tls else None
        self.sender = sender
        self.limits = limits
        self.meter = meter
        self.tls = tls
        self.pq_mode = pq_mode
        self.max_conns = max_conns
        self._links: collections.OrderedDict[int, _Link] = collections.OrderedDict()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the connections' tasks; returns never (cancelled with the service)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    @property
    def open(self) -> int:
        return sum(1 for link in self._links.values() if _alive(link.client))

    async def ask(self, contact: Contact, request: Request[R], timeout: float) -> R:
        stamped = attrs.evolve(request, sender=self.sender())  # type: ignore[misc]
        try:
            with trio.fail_after(timeout):
                client = await self._client(contact)
                reply: R = await client.call(dht.PEER, stamped, timeout=timeout)
                return reply
        except trio.TooSlowError:
            raise Unreachable("timeout") from None
        except DialError as exc:
            raise Unreachable(exc.result) from None
        except ChannelClosed:
            self._forget(contact.key)
            raise Unreachable("closed") from None
        except oap.OapError as exc:
            if exc.reason in ("transport_error", "timeout"):
                self._forget(contact.key)
                raise Unreachable(exc.reason) from None
            raise Unreachable(exc.reason, answered=True) from None

    async def _client(self, contact: Contact) -> PeerClient:
        link = self._links.get(contact.key)
        if link is None:
            link = self._links[contact.key] = _Link()
            await self._trim()
        self._links.move_to_end(contact.key)
        async with link.lock:
            if _alive(link.client):
                assert link.client is not None
                return link.client
            assert self._nursery is not None, "Links.run is not running"
            addr = PeerAddr(text_of(contact.key), contact.host, contact.port)
            link.client, _ = await open_session(
                addr,
                self.cert,
                self._nursery,
                limits=self.limits,
                meter=self.meter,
                tls=self.tls,
                context=self.context,
                pq_mode=self.pq_mode,
            )
            return link.client

    async def _trim(self) -> None:
        while len(self._links) > self.max_conns:
            _, oldest = self._links.popitem(last=False)
            if oldest.client is not None:
                await oldest.client.conn.channel.aclose()

    def _forget(self, key: int) -> None:
        link = self._links.get(key)
        if link is not None and not _alive(link.client):
            del self._links[key]


def _alive(client: PeerClient | None) -> bool:
    return client is not None and not client.closed.is_set()
