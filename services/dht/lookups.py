"""svc-dht's lookups: the ``kad.Lookup`` state machine driven over real connections.

Guarantees:

- at most ``alpha`` young queries in flight (plus hedges after ``hedge_delay``), each bounded
  by ``request_timeout``, the whole lookup by ``lookup_timeout`` (what it found by then is
  its answer);
- a node that answered is ``seen`` by the routing table, one that could not be reached is
  ``failed`` (one that answered with a refusal is neither: it is alive but told us nothing);
- provider and peer records in answers are checked (signature, node id, expiry) before they
  count; a refused one is counted under its reason;
- ``complete`` is false when the lookup ran out of time or a node among the nearest could not
  be asked: "no provider" then means "none that we could see", never "none exists".
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ipc.proto import dht
from ipc.proto.codec import AnyRequest
from services.dht.links import Unreachable
from services.dht.state import DhtState
from services.dht.wire import contacts_of, peer_from_wire, provider_from_wire
from services.lib.kad import Contact, Lookup, PeerRecord, ProviderRecord, Rejected, check, text_of

__all__ = ["Ask", "Lookups", "Outcome"]

Ask = Callable[[Contact, AnyRequest, float], Awaitable[Any]]
"""One query to a contact and its typed reply (``Links.ask``); ``Unreachable`` when it fails."""


@attrs.define
class Outcome:
    lookup: Lookup
    complete: bool
    providers: dict[int, ProviderRecord] = attrs.field(factory=dict)
    peer: PeerRecord | None = None

    @property
    def nearest(self) -> list[Contact]:
        return self.lookup.result()


class Lookups:
    def __init__(self, state: DhtState, ask: Ask) -> None:
        self.state = state
        self.ask = ask

    async def find_node(self, target: int, *, k: int | None = None) -> Outcome:
        return await self.run(dht.FindNode(target=text_of(target)), target, k=k)

    async def find_providers(self, key: int, *, want: int = 1) -> Outcome:
        return await self.run(dht.FindProviders(id=text_of(key, "b3:")), key, want=want)

    async def find_peer(self, node: int) -> Outcome:
        return await self.run(dht.GetPeer(node_id=text_of(node)), node, want=1)

    async def run(
        self, request: AnyRequest, target: int, *, want: int = 0, k: int | None = None
    ) -> Outcome:
        st, cfg = self.state, self.state.settings
        k = k or cfg.k
        lk = Lookup(
            target,
            st.table.closest(target, k),
            own=st.own,
            k=k,
            alpha=cfg.alpha,
            hedge_delay=cfg.hedge_delay,
            want=want,
        )
        outcome = Outcome(lk, complete=False)
        started = time.perf_counter()
        changed = trio.Event()

        async def query(contact: Contact) -> None:
            try:
                reply = await self.ask(contact, request, cfg.request_timeout)
            except Unreachable as exc:
                lk.failed(contact.key)
                if not exc.answered:
                    st.table.failed(contact.key)
            else:
                st.table.seen(contact, trio.current_time())
                nearer, values = self._take(reply, target, outcome)
                lk.answered(contact.key, nearer, values=values)
            changed.set()

        with trio.move_on_after(cfg.lookup_timeout) as scope:
            async with trio.open_nursery() as nursery:
                while not lk.done:
                    for contact in lk.next_queries(trio.current_time()):
                        nursery.start_soon(query, contact)
                    if lk.done:
                        break
                    with trio.move_on_after(cfg.hedge_delay):
                        await changed.wait()
                    changed = trio.Event()
                nursery.cancel_scope.cancel()
        outcome.complete = not scope.cancelled_caught and lk.gaps() == 0
        if lk.sent:
            st.stats.lookup(time.perf_counter() - started, lk.hops)
            st.looked_up(lk.hops)
        return outcome

    def _take(self, reply: object, target: int, outcome: Outcome) -> tuple[list[Contact], int]:
        """The contacts an answer gave and how many new values (checked records) it held."""
        st = self.state
        limit = st.settings.k
        values = 0
        match reply:
            case dht.Nodes(contacts=addrs):
                return contacts_of(addrs, limit), 0
            case dht.ProvidersAnswer(providers=wires, contacts=addrs):
                for wire in wires[:limit]:
                    offer = provider_from_wire(target, wire)
                    if offer.provider in outcome.providers or not self._valid(offer):
                        continue
                    outcome.providers[offer.provider] = offer
                    values += 1
                return contacts_of(addrs, limit), values
            case dht.PeerAnswer(record=peer, contacts=addrs):
                if peer is not None and outcome.peer is None:
                    record = peer_from_wire(peer)
                    if record.node != target:
                        st.stats.rejected("node_id")
                    elif self._valid(record):
                        outcome.peer, values = record, 1
                return contacts_of(addrs, limit), values
        return [], 0

    def _valid(self, record: ProviderRecord | PeerRecord) -> bool:
        try:
            check(record, self.state.wall())
        except Rejected as exc:
            self.state.stats.rejected(exc.reason)
            return False
        return True
