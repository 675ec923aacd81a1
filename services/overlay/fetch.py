"""Fetch by id: get an object this node lacks from its peers, verify it, commit it locally.

Guarantees:

- bounded, hedged fan-out (bitswap's broadcasts are the lesson): the first provider is asked;
  if it has not begun its stream after ``hedge_delay`` (or failed) and has sent us nothing else
  meanwhile, the next one is asked too (one that streams, or is busy streaming other objects
  to us, is left to finish: a stall is cut at the read timeout), with at
  most ``fanout`` asked at once, until every provider was asked; the first complete, verified
  copy wins and the others are cancelled;
- nothing unverified is kept: the bytes go to a temp object in the store, their BLAKE3 digest
  must equal the id and the size the announced size, else the copy is dropped (the peer is
  marked with the error); only a verified temp is committed through svc-storage, and the fetch
  is answered only once svc-storage has made it durable;
- every DATA frame must name the object and continue exactly where the last one ended; an object
  announced larger than ``max_object_size`` is refused before a byte is written, and its size is
  reserved against the store's free space first (507 ``insufficient_storage`` if it cannot fit,
  counting every other fetch's reservation);
- a peer whose bytes do not verify is counted against it (``services.overlay.peers``: banned
  after three);
- a progress deadline, not a total one: a fetch may take ``fetch_timeout`` plus the time its
  bytes need at ``min_rate``, and each frame must come within the read timeout;
- providers: the listed peers (``overlay.peers``) first; if none delivered, the ones svc-dht
  finds (``discover``), asked the same way; a DHT lookup that could not see every holder (or
  a DHT that did not answer) counts as a provider that could not be reached;
- the outcome is typed: ``Fetched``; 404 ``not_found`` only when every provider was asked and
  every one said so; 503 ``unavailable`` (+ retry_after) when any could not be reached or timed
  out (DESIGN §8: a client may retry, so never a 404 then); 504 ``timeout`` past the deadline.
  Callers go through ``services.overlay.fetch_jobs`` (one fetch per id, stopped when orphaned).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from ipc import oap
from ipc.proto import dht, mailbox, overlay, storage
from ipc.transport import (
    ChannelClosed,
    DialError,
    Limits,
    Meter,
    NodeCertificate,
    PeerAddr,
    client_context,
)
from ipc.transport.client import PeerClient, read_object
from ipc.transport.session import open_session
from kernel import logs
from services.lib import objstore
from services.overlay.fetch_jobs import FetchJobs, Progress
from services.overlay.peers import PeerLink

__all__ = ["Fetcher", "Room"]

Commit = Callable[[storage.Commit], Awaitable[storage.Stored]]
Room = Callable[[], Awaitable[int]]
"""The store's free bytes now (a fresh read of svc-storage's usage)."""
ASK_TIMEOUT = 5.0  # seconds for a provider's first answer (START or an error)
DELIVER_TIMEOUT = 10.0  # seconds for a peer to make a batch of messages durable
MAX_FOUND = 256  # links kept to nodes the DHT named
MAX_GROUPS = 256  # objects whose bad providers are remembered (``overlay.Fetch.group``)
WRITE_GROUP = 256 << 10  # bytes of DATA held before they go to the temp file
Discover = Callable[[str], Awaitable[dht.ProvsFound]]
"""The providers the DHT knows of an object (svc-dht's ``findprovs``)."""
FindPeer = Callable[[str], Awaitable[dht.PeerFound]]
"""A node's address by the DHT (svc-dht's ``findpeer``; 404 ``node_unknown``)."""


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
        room: Room,
        limits: Limits,
        tls: bool,
        hedge_delay: float,
        fanout: int,
        fetch_timeout: float,
        min_rate: float,
        max_object_size: int,
        meter: Meter,
        ban_window: float = 600.0,
        pq_mode: str = "off",
        discover: Discover | None = None,
        find_peer: FindPeer | None = None,
    ) -> None:
        self.pq_mode = pq_mode
        self.ban_window = ban_window
        self.links = [PeerLink(addr, ban_window=ban_window) for addr in peers]
        self.discover = discover  # None: this node runs no DHT
        self.find_peer = find_peer
        # links to nodes the DHT named (not listed): reused, the least recently used dropped
        self.found: collections.OrderedDict[str, PeerLink] = collections.OrderedDict()
        self.cert = cert
        self.root = store_root
        self.commit = commit
        self.room = room
        self.limits = limits
        self.tls = tls
        self.context = client_context(cert) if tls else None
        self.hedge_delay = hedge_delay
        self.fanout = fanout
        self.fetch_timeout = fetch_timeout
        self.min_rate = min_rate
        self.max_object_size = max_object_size
        self.meter = meter
        self.reserved = 0  # bytes of the store promised to fetches under way
        self.jobs = FetchJobs(self._fetch)
        self._dropped: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the peer connections' tasks and the fetches; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.jobs.bind(nursery)
            task_status.started()
            await trio.sleep_forever()

    def peers(self) -> list[overlay.PeerState]:
        """The listed peers, then the DHT-named providers we have a connection to."""
        found = [
            link.view(listed=False)
            for link in self.found.values()
            if link.client is not None and not link.client.closed.is_set()
        ]
        return [link.view() for link in self.links] + found

    def add_peer(self, addr: PeerAddr) -> bool:
        """List ``addr`` as a peer from now on (``ronctl peers add``); False if it already was
        (a new address for a listed node replaces the old one)."""
        for i, link in enumerate(self.links):
            if link.addr.node_id == addr.node_id:
                if link.addr == addr:
                    return False
                self._close(link)
                self.links[i] = PeerLink(addr, ban_window=self.ban_window)
                return True
        self.found.pop(addr.node_id, None)
        self.links.append(PeerLink(addr, ban_window=self.ban_window))
        return True

    def remove_peer(self, node_id: str) -> bool:
        """Stop listing ``node_id`` (``ronctl peers rm``): its connection is closed."""
        link = next((lk for lk in self.links if lk.addr.node_id == node_id), None)
        if link is None:
            return False
        self.links.remove(link)
        self._close(link)
        return True

    def _close(self, link: PeerLink) -> None:
        if link.client is not None and self._nursery is not None:
            self._nursery.start_soon(link.client.conn.channel.aclose)

    async def fetch(
        self, obj_id: str, wait: float = 0.0, hints: overlay.Fetch | None = None
    ) -> overlay.Fetched:
        """``obj_id`` from the peers (see the module doc); within ``wait`` s, else the progress;
        ``hints``: the request's ``order`` and ``group`` (``overlay.Fetch``)."""
        if not self.links and self.discover is None:
            raise oap.OapError("not_found", f"no object {obj_id} here, and no peers to ask")
        return await self.jobs.ask(obj_id, wait, hints)

    async def _fetch(
        self, obj_id: str, progress: Progress, hints: overlay.Fetch | None = None
    ) -> overlay.Fetched:
        group = hints.group if hints is not None else None
        listed = self._providers(obj_id, hints.order if hints is not None else None, group)
        with trio.CancelScope(deadline=trio.current_time() + self.fetch_timeout) as deadline:
            round_ = _Round(
                obj_id,
                progress,
                _ProgressDeadline(deadline, self.fetch_timeout, self.min_rate),
                group=group,
            )
            # a banned peer is not asked: it may hold the object, so no 404 can follow
            round_.outcomes.extend(["banned"] * (len(self.links) - len(listed)))
            asked = len(self.links)
            await self._ask_all(round_, listed)
            if not round_.won and self.discover is not None:
                asked_ids = {lk.addr.node_id for lk in self.links}
                found = await self._discovered(obj_id, round_, asked_ids)
                asked += len(found)
                await self._ask_all(round_, found)
        if deadline.cancelled_caught:
            await self._drop(round_.won)
            raise oap.OapError(
                "timeout", f"no peer delivered {obj_id} in time (fetch_timeout + min_rate)"
            )
        if not round_.won:
            raise _no_copy(obj_id, round_.outcomes, asked)
        copy = round_.won[0]
        await self._drop(round_.won[1:])
        reply = await self.commit(storage.Commit(tmp=copy.tmp, id=obj_id, size=copy.size))
        logs.log("object_fetched", id=obj_id, size=reply.size, peer=copy.peer)
        return overlay.Fetched(id=obj_id, size=copy.size, peer=copy.peer)

    async def _discovered(self, obj_id: str, round_: _Round, asked: set[str]) -> list[PeerLink]:
        """The providers the DHT names that are not listed peers (banned ones, and ones dropped
        for the object this id is a part of, left out). A lookup
        that could not see every holder, or a DHT that did not answer, counts as one provider
        "down": the fetch then answers 503, never a 404 it cannot be sure of."""
        assert self.discover is not None
        try:
            answer = await self.discover(obj_id)
        except oap.OapError as exc:
            logs.log("fetch_no_dht", level="warning", id=obj_id, reason=exc.reason)
            round_.outcomes.append("down")
            return []
        if not answer.complete:
            round_.outcomes.append("down")
        links = []
        for found in answer.providers:
            if found.node_id in asked or found.node_id == self.cert.node_id:
                continue
            link = self._found_link(PeerAddr.parse(found.addr))
            if self._askable(link, round_.group):
                links.append(link)
        return links

    def _found_link(self, addr: PeerAddr) -> PeerLink:
        """The link to a node the DHT named (one per node, reused; at most ``MAX_FOUND``)."""
        listed = next((lk for lk in self.links if lk.addr.node_id == addr.node_id), None)
        if listed is not None:
            return listed
        link = self.found.pop(addr.node_id, None)
        if link is None or link.addr != addr:
            link = PeerLink(addr, ban_window=self.ban_window)
        self.found[addr.node_id] = link
        while len(self.found) > MAX_FOUND:
            self._close(self.found.popitem(last=False)[1])
        return link

    async def _ask_all(self, round_: _Round, providers: list[PeerLink]) -> None:
        """Every provider in turn, the next one after ``hedge_delay`` or a failure, at most
        ``fanout`` at once, until one delivers a verified copy (it cancels the others)."""
        slots = trio.Semaphore(self.fanout)
        async with trio.open_nursery() as nursery:
            for link in providers:
                await slots.acquire()
                failed, answered = trio.Event(), trio.Event()
                nursery.start_soon(
                    self._attempt, round_, link, (failed, answered), slots, nursery.cancel_scope
                )
                with trio.move_on_after(self.hedge_delay):
                    await answered.wait()  # a quick failure asks the next one at once
                while not answered.is_set() and link.streaming_within(self.hedge_delay):
                    # it is busy sending us other objects (its chunks, say): our request
                    # waits behind them; asking another now would fetch this one twice
                    with trio.move_on_after(self.hedge_delay):
                        await answered.wait()
                if answered.is_set() and not failed.is_set():
                    # it streams: the next one only if it fails (a stall is cut at the read
                    # timeout), so a paced provider's object is not fetched twice
                    await failed.wait()

    async def locate(self, node_id: str) -> overlay.Located:
        """Where ``node_id`` is (see ``overlay.Locate``)."""
        link = next((lk for lk in self.links if lk.addr.node_id == node_id), None)
        if link is not None:
            return overlay.Located(node_id, str(link.addr), True)
        link = self.found.get(node_id)
        if link is None:
            if self.find_peer is None:
                raise oap.OapError(
                    "node_unknown", f"{node_id} is not one of this node's peers (and no DHT)"
                )
            try:
                found = await self.find_peer(node_id)
            except oap.OapError as exc:
                if exc.reason == "node_unknown":
                    raise
                raise oap.OapError(
                    "unavailable", f"the DHT could not look {node_id} up", retry_after=5
                ) from None
            link = self._found_link(PeerAddr.parse(found.addr))
        return overlay.Located(node_id, str(link.addr), False)

    async def deliver(self, node_id: str, request: mailbox.Send) -> mailbox.Sent:
        """``request`` sent to svc-mailbox on ``node_id`` (a listed peer, or one the DHT finds)
        over its link; the peer's answer (its errors as they are), or 503 ``unavailable`` when
        it cannot be found or reached now (the outbox retries)."""
        try:
            await self.locate(node_id)
        except oap.OapError as exc:
            raise oap.OapError("unavailable", exc.detail or exc.reason, retry_after=5) from None
        listed = next((lk for lk in self.links if lk.addr.node_id == node_id), None)
        link = listed or self.found[node_id]
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

    def _drop_for(self, group: str | None, link: PeerLink) -> None:
        """A provider that sent a bad part of object ``group`` is not asked for its other
        parts (bounded: the last ``MAX_GROUPS`` objects)."""
        if not group:
            return
        self._dropped.setdefault(group, set()).add(link.addr.node_id)
        self._dropped.move_to_end(group)
        while len(self._dropped) > MAX_GROUPS:
            self._dropped.popitem(last=False)
        logs.log("provider_dropped", level="warning", peer=link.addr.node_id, group=group)

    def _askable(self, link: PeerLink, group: str | None) -> bool:
        """Not banned, and not dropped for the object ``group`` (``_drop_for``)."""
        if link.banned_for():
            return False
        return not group or link.addr.node_id not in self._dropped.get(group, ())

    def _providers(
        self, obj_id: str, order: int | None = None, group: str | None = None
    ) -> list[PeerLink]:
        """Listed peers to ask, in order: a start that depends on the id (spreads load) or on
        the caller's ``order``, the ones that failed last time at the end, the banned ones
        (and those dropped for ``group``) not at all."""
        if not self.links:
            return []
        start = (int(obj_id[3:11], 16) if order is None else order) % len(self.links)
        ring = self.links[start:] + self.links[:start]
        return sorted(
            (link for link in ring if self._askable(link, group)),
            key=lambda link: link.state() == "down",
        )

    async def _attempt(
        self,
        round_: _Round,
        link: PeerLink,
        events: tuple[trio.Event, trio.Event],
        slot: trio.Semaphore,
        others: trio.CancelScope,
    ) -> None:
        """One provider asked; ``events``: (failed: set when this attempt ends, answered:
        set when its stream starts or the attempt ends)."""
        failed, answered = events
        obj_id = round_.obj_id
        try:
            copy = await self._download(link, round_, answered)
        except _NotThere:
            round_.outcomes.append("not_found")
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
            reason = exc.reason if isinstance(exc, oap.OapError) else ""
            if reason in UNVERIFIED:
                link.integrity_failure(obj_id, link.last_error)
                self._drop_for(round_.group, link)
            full = reason == "insufficient_storage"
            round_.outcomes.append("insufficient_storage" if full else "down")
            return
        finally:
            failed.set()
            answered.set()
            slot.release()
        round_.won.append(copy)
        others.cancel()  # the others lose

    async def _client(self, link: PeerLink) -> PeerClient:
        async with link.lock:
            if link.client is not None and not link.client.closed.is_set():
                return link.client
            assert self._nursery is not None, "Fetcher.run is not running"
            client, link.pq = await open_session(
                link.addr,
                self.cert,
                self._nursery,
                limits=self.limits,
                meter=self.meter,
                tls=self.tls,
                context=self.context,
                pq_mode=self.pq_mode,
            )
            if link.pq == "fallback":
                logs.log("pq_fallback", level="warning", peer=link.addr.node_id)
            link.client = client
            link.last_error = ""
            return client

    async def _download(self, link: PeerLink, round_: _Round, answered: trio.Event) -> _Copy:
        obj_id, progress, deadline = round_.obj_id, round_.progress, round_.deadline
        client = await self._client(link)
        frame = overlay.PEER.request_frame(overlay.Get(id=obj_id))
        temp: objstore.TempObject | None = None
        reserved = 0
        streaming = False

        async def begin(size: int) -> None:
            nonlocal temp, reserved, streaming
            streaming = True
            answered.set()
            free = await self.room()
            if size > free - self.reserved:
                raise oap.OapError(
                    "insufficient_storage",
                    f"{obj_id} is {size} bytes; the store has room for {free - self.reserved}",
                )
            self.reserved += size
            reserved = size
            progress.size = max(progress.size, size)
            temp = await trio.to_thread.run_sync(
                lambda: objstore.TempObject(self.root, max_size=max(size, 1))
            )

        held = bytearray()  # DATA pieces written to the temp file in groups (fewer thread hops)

        async def flush() -> None:
            assert temp is not None
            if held:
                await trio.to_thread.run_sync(temp.write, bytes(held))
                held.clear()

        async def chunk(piece: bytes) -> None:
            held.extend(piece)
            if len(held) >= WRITE_GROUP:
                await flush()
            link.bytes_in += len(piece)
            link.last_rx = trio.current_time()
            progress.received += len(piece)
            deadline.moved(len(piece))

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
            streaming = False
            await flush()
            assert temp is not None
            got, size, tmp = await trio.to_thread.run_sync(temp.finish)
            temp = None  # finished: the temp file is ours to commit or remove
            if got != obj_id:
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, tmp)
                raise oap.OapError("digest_mismatch", f"the bytes hash to {got}")
            return _Copy(tmp, size, link.addr.node_id)
        finally:
            self.reserved -= reserved
            with trio.CancelScope(shield=True):
                if streaming:  # abandoned mid-stream: OAP/1 has no cancel, so the peer would
                    await client.conn.channel.aclose()  # go on sending; close its connection
                if temp is not None:
                    await trio.to_thread.run_sync(temp.abort)

    async def _drop(self, copies: list[_Copy]) -> None:
        with trio.CancelScope(shield=True):
            for copy in copies:
                await trio.to_thread.run_sync(objstore.remove_temp, self.root, copy.tmp)


# Errors that mean the peer's bytes (or its claims about them) did not verify: held against it.
UNVERIFIED = frozenset({"digest_mismatch", "schema_invalid"})


@attrs.define
class _Round:
    """One fetch's asking of its providers: what every attempt shares."""

    obj_id: str
    progress: Progress
    deadline: _ProgressDeadline
    won: list[_Copy] = attrs.field(factory=list)
    outcomes: list[str] = attrs.field(factory=list)  # not_found, down, insufficient_storage
    group: str | None = None  # the object this id is a part of (``overlay.Fetch.group``)


class _ProgressDeadline:
    """A fetch may take ``timeout`` plus the time its bytes need at ``min_rate``: a 1 GiB
    object through a fast peer is never cut, a trickling one is."""

    def __init__(self, scope: trio.CancelScope, timeout: float, min_rate: float) -> None:
        self._scope = scope
        self._base = trio.current_time() + timeout
        self._min_rate = min_rate
        self._moved = 0

    def moved(self, n: int) -> None:
        self._moved += n
        self._scope.deadline = self._base + self._moved / self._min_rate


def _no_copy(obj_id: str, outcomes: list[str], asked: int) -> oap.OapError:
    """The error when no provider delivered: 404 only if every one of them said not found
    (a DHT lookup that could not see everything is one more outcome, "down")."""
    if outcomes.count("not_found") == len(outcomes):
        if not asked:
            return oap.OapError("not_found", f"no provider of {obj_id} is known")
        return oap.OapError("not_found", f"none of the {asked} providers has {obj_id}")
    if "insufficient_storage" in outcomes:
        return oap.OapError("insufficient_storage", f"{obj_id} does not fit in the store")
    down = len(outcomes) - outcomes.count("not_found")
    banned = outcomes.count("banned")
    why = f" ({banned} banned for now)" if banned else ""
    return oap.OapError(
        "unavailable",
        f"{down} of {asked} providers could not be reached or timed out for {obj_id}{why}",
        retry_after=60 if banned == down else 1,
    )
