"""Fetch by id: get an object this node lacks from its peers, verify it, commit it locally.

Guarantees:

- bounded, hedged fan-out (bitswap's broadcasts are the lesson): the first provider is asked;
  if it has not delivered after ``hedge_delay`` (or failed), the next one is asked too, up to
  ``fanout`` providers; the first complete, verified copy wins and the others are cancelled;
- nothing unverified is kept: the bytes go to a temp object in the store, their BLAKE3 digest
  must equal the id and the size the announced size, else the copy is dropped (the peer is
  marked with the error); only a verified temp is committed through svc-storage, and the fetch
  is answered only once svc-storage has made it durable;
- every DATA frame must name the object and continue exactly where the last one ended; an object
  announced larger than ``max_object_size`` is refused before a byte is written;
- the outcome is typed: ``Fetched``; 404 ``not_found`` when every asked provider said so; 503
  ``unavailable`` (+ retry_after) when none could be reached; 504 ``timeout`` past
  ``fetch_timeout``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ipc import oap
from ipc.proto import mailbox, overlay, storage
from ipc.transport import (
    ChannelClosed,
    DialError,
    Limits,
    Meter,
    NodeCertificate,
    PeerAddr,
    client_context,
    dial,
)
from ipc.transport.client import PeerClient, read_object
from ipc.transport.pq_exchange import PqRefused, dialer_exchange
from kernel import logs
from services.lib import objstore

__all__ = ["Fetcher", "PeerLink"]

Commit = Callable[[storage.Commit], Awaitable[Any]]
ASK_TIMEOUT = 5.0  # seconds for a provider's first answer (START or an error)
DELIVER_TIMEOUT = 10.0  # seconds for a peer to make a batch of messages durable


@attrs.define
class PeerLink:
    """One configured peer: its address, the connection if open, what went through it."""

    addr: PeerAddr
    client: PeerClient | None = None
    bytes_in: int = 0
    last_error: str = ""
    pq: str = ""  # the last connection's posture: pq, fallback, off
    lock: trio.Lock = attrs.field(factory=trio.Lock)

    def state(self) -> str:
        if self.client is not None and not self.client.closed.is_set():
            return "connected"
        return "down" if self.last_error else "idle"

    def view(self) -> overlay.PeerState:
        return overlay.PeerState(
            node_id=self.addr.node_id,
            addr=str(self.addr),
            state=self.state(),
            bytes_in=self.bytes_in,
            bytes_out=0,
            last_error=self.last_error,
            pq=self.pq,
        )


class _NotThere(Exception):
    """This provider answered 404."""


@attrs.define
class _Copy:
    tmp: str
    size: int
    peer: str


class Fetcher:
    def __init__(
        self,
        peers: tuple[PeerAddr, ...],
        cert: NodeCertificate,
        store_root: Path,
        commit: Commit,
        *,
        limits: Limits,
        tls: bool,
        hedge_delay: float,
        fanout: int,
        fetch_timeout: float,
        max_object_size: int,
        meter: Meter,
        pq_mode: str = "off",
    ) -> None:
        self.pq_mode = pq_mode
        self.links = [PeerLink(addr) for addr in peers]
        self.cert = cert
        self.root = store_root
        self.commit = commit
        self.limits = limits
        self.tls = tls
        self.context = client_context(cert) if tls else None
        self.hedge_delay = hedge_delay
        self.fanout = fanout
        self.fetch_timeout = fetch_timeout
        self.max_object_size = max_object_size
        self.meter = meter
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the peer connections' tasks; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def peers(self) -> overlay.PeerList:
        return overlay.PeerList(peers=tuple(link.view() for link in self.links))

    async def fetch(self, obj_id: str) -> overlay.Fetched:
        if not self.links:
            raise oap.OapError("not_found", f"no object {obj_id} here, and no peers to ask")
        outcomes: list[str] = []
        won: list[_Copy] = []
        try:
            with trio.fail_after(self.fetch_timeout):
                async with trio.open_nursery() as nursery:
                    for n, link in enumerate(self._providers(obj_id)):
                        failed = trio.Event()
                        nursery.start_soon(
                            self._attempt, link, obj_id, won, outcomes, failed, nursery
                        )
                        if n + 1 >= self.fanout:
                            break
                        with trio.move_on_after(self.hedge_delay):
                            await failed.wait()  # a quick failure asks the next one at once
                        if won:
                            break
        except trio.TooSlowError:
            await self._drop(won)
            raise oap.OapError(
                "timeout", f"no peer delivered {obj_id} in {self.fetch_timeout} s"
            ) from None
        if not won:
            if outcomes and all(o == "not_found" for o in outcomes):
                raise oap.OapError("not_found", f"no peer has {obj_id}")
            if "not_found" in outcomes:
                raise oap.OapError("not_found", f"no reachable peer has {obj_id}")
            raise oap.OapError(
                "unavailable", f"no peer could be reached for {obj_id}", retry_after=1
            )
        copy = won[0]
        await self._drop(won[1:])
        reply = await self.commit(storage.Commit(tmp=copy.tmp, id=obj_id, size=copy.size))
        logs.log("object_fetched", id=obj_id, size=reply.size, peer=copy.peer)
        return overlay.Fetched(id=obj_id, size=copy.size, peer=copy.peer)

    async def deliver(self, node_id: str, request: mailbox.Send) -> mailbox.Sent:
        """``request`` sent to svc-mailbox on the configured peer ``node_id`` over its link;
        the peer's answer (its errors as they are), or 503 ``unavailable`` when the peer is not
        configured or cannot be reached (the outbox retries)."""
        link = next((lk for lk in self.links if lk.addr.node_id == node_id), None)
        if link is None:
            raise oap.OapError(
                "unavailable", f"{node_id} is not one of this node's overlay.peers", retry_after=5
            )
        try:
            client = await self._client(link)
            frame = mailbox.PROTOCOL.request_frame(request)
            answer = await client.request(frame, timeout=DELIVER_TIMEOUT)
        except (DialError, ChannelClosed, trio.TooSlowError, OSError) as exc:
            link.last_error = f"{type(exc).__name__}: {exc}"[:200]
            raise oap.OapError(
                "unavailable", f"{node_id}: {link.last_error}", retry_after=1
            ) from None
        reply: mailbox.Sent = mailbox.PROTOCOL.parse_reply(answer, request)
        return reply

    def _providers(self, obj_id: str) -> list[PeerLink]:
        """Peers to ask, in order: a start that depends on the id (spreads load), the ones that
        failed last time at the end."""
        start = int(obj_id[3:11], 16) % len(self.links)
        ring = self.links[start:] + self.links[:start]
        return sorted(ring, key=lambda link: link.state() == "down")

    async def _attempt(
        self,
        link: PeerLink,
        obj_id: str,
        won: list[_Copy],
        outcomes: list[str],
        failed: trio.Event,
        nursery: trio.Nursery,
    ) -> None:
        try:
            copy = await self._download(link, obj_id)
        except _NotThere:
            outcomes.append("not_found")
            failed.set()
            return
        except (
            DialError,
            ChannelClosed,
            oap.OapError,
            trio.TooSlowError,
            objstore.StoreError,
            OSError,
        ) as exc:
            link.last_error = f"{type(exc).__name__}: {exc}"[:200]
            logs.log(
                "fetch_failed",
                level="warning",
                id=obj_id,
                peer=link.addr.node_id,
                reason=link.last_error,
                conn_id=link.client.conn.conn_id if link.client else None,
            )
            outcomes.append("unreachable")
            failed.set()
            return
        won.append(copy)
        nursery.cancel_scope.cancel()  # the others lose

    async def _client(self, link: PeerLink) -> PeerClient:
        async with link.lock:
            if link.client is not None and not link.client.closed.is_set():
                return link.client
            assert self._nursery is not None, "Fetcher.run is not running"
            conn = await dial(
                link.addr,
                self.cert,
                self._nursery,
                limits=self.limits,
                meter=self.meter,
                tls=self.tls,
                context=self.context,
            )
            client = PeerClient(conn)
            await self._nursery.start(client.run)
            try:
                link.pq = await dialer_exchange(
                    client,
                    self.pq_mode,
                    dialer=self.cert.node_id,
                    listener=link.addr.node_id,
                    timeout=self.limits.handshake_timeout,
                )
            except PqRefused as exc:
                await conn.channel.aclose()
                self.meter.dialed("pq_refused")
                raise DialError("pq_refused", str(exc)) from None
            if link.pq == "fallback":
                self.meter.pq_fallback()
                logs.log("pq_fallback", level="warning", peer=link.addr.node_id)
            link.client = client
            link.last_error = ""
            return client

    async def _download(self, link: PeerLink, obj_id: str) -> _Copy:
        client = await self._client(link)
        frame = overlay.PEER.request_frame(overlay.Get(id=obj_id))
        temp: objstore.TempObject | None = None

        async def begin(size: int) -> None:
            nonlocal temp
            temp = await trio.to_thread.run_sync(
                lambda: objstore.TempObject(self.root, max_size=max(size, 1))
            )

        async def chunk(piece: bytes) -> None:
            assert temp is not None
            await trio.to_thread.run_sync(temp.write, piece)
            link.bytes_in += len(piece)

        try:
            async with client.exchange(frame) as answers:
                try:
                    # a stalled provider is cut at the read timeout (the hedge took over anyway)
                    await read_object(
                        answers,
                        obj_id,
                        first_timeout=ASK_TIMEOUT,
                        timeout=self.limits.timeouts.read,
                        max_size=self.max_object_size,
                        chunk=chunk,
                        begin=begin,
                    )
                except oap.OapError as exc:
                    if exc.reason == "not_found":
                        raise _NotThere() from None
                    raise
            assert temp is not None
            got, size, tmp = await trio.to_thread.run_sync(temp.finish)
            temp = None  # finished: the temp file is ours to commit or remove
            if got != obj_id:
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, tmp)
                raise oap.OapError("digest_mismatch", f"the bytes hash to {got}")
            return _Copy(tmp, size, link.addr.node_id)
        finally:
            if temp is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(temp.abort)

    async def _drop(self, copies: list[_Copy]) -> None:
        with trio.CancelScope(shield=True):
            for copy in copies:
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, copy.tmp)
