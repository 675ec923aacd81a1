"""What svc-dht answers the node's own services and operators (``ipc.proto.dht.LOCAL``).

Guarantees: ``findprovs`` lists providers this node holds records of, else the ones a lookup
found (records checked), with ``complete`` telling "none exist" from "none reachable";
``findpeer`` answers our own address, a contact that proved the id to us, or a signed peer
record, else 404 ``node_unknown`` once the lookup (bounded by ``lookup_timeout``) found none;
``provide`` announces an object this node stores (404 ``not_found`` for one it does not: a node
never claims what it cannot serve); ``seed`` answers once the node answered a ping (503
``unavailable`` otherwise) and joins through it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio

from ipc import oap
from ipc.proto import dht
from services.dht.links import Unreachable
from services.dht.lookups import Ask, Lookups
from services.dht.providing import Providing
from services.dht.state import DhtState
from services.dht.wire import addr_of, contact_of
from services.lib import objstore
from services.lib.kad import ProviderRecord, key_of, text_of

__all__ = ["Local"]


def _found(records: list[ProviderRecord], limit: int) -> tuple[dht.Found, ...]:
    return tuple(
        dht.Found(text_of(r.provider), addr_of(r.provider, r.addrs[0]))
        for r in records[:limit]
        if r.addrs
    )


class Local:
    def __init__(
        self,
        state: DhtState,
        lookups: Lookups,
        providing: Providing,
        ask: Ask,
        store_root: Path,
    ) -> None:
        self.state = state
        self.lookups = lookups
        self.providing = providing
        self.ask = ask
        self.store_root = store_root
        self.joins: trio.MemorySendChannel[None] | None = None  # a seed asks for a join

    async def findprovs(self, req: dht.FindProvs) -> dht.ProvsFound:
        """Records this node holds answer at once (it is among the nodes nearest the id, or
        looked the id up before); else a lookup that stops at the first node holding any, whose
        records are then kept here too (signed: any node may cache them; libp2p does the
        same), so the next ask is local."""
        st = self.state
        key = key_of(req.id)
        held = st.store.providers(key, st.wall(), limit=req.limit)
        if held:
            return dht.ProvsFound(_found(held, req.limit), 0, True)
        outcome = await self.lookups.find_providers(key, want=1)
        for record in outcome.providers.values():  # checked and signed: ours to cache
            st.store.add_provider(record)
        found = _found(list(outcome.providers.values()), req.limit)
        return dht.ProvsFound(found, outcome.lookup.hops, outcome.complete or bool(found))

    async def findpeer(self, req: dht.FindPeer) -> dht.PeerFound:
        st = self.state
        node = key_of(req.node_id)
        if node == st.own:
            return dht.PeerFound(req.node_id, addr_of(node, st.addrs[0]), 0)
        known = st.table.get(node)
        if known is not None:
            return dht.PeerFound(req.node_id, known.addr, 0)
        outcome = await self.lookups.find_peer(node)
        hops = outcome.lookup.hops
        if outcome.peer is not None and outcome.peer.addrs:
            return dht.PeerFound(req.node_id, addr_of(node, outcome.peer.addrs[0]), hops)
        answered = next((c for c in outcome.nearest if c.key == node), None)
        if answered is not None:  # it answered us itself over a pinned connection
            return dht.PeerFound(req.node_id, answered.addr, hops)
        raise oap.OapError("node_unknown", f"no node {req.node_id} found by the DHT")

    async def provide(self, req: dht.Provide) -> dht.Provided:
        path = objstore.object_path(self.store_root, req.id)
        if not await trio.to_thread.run_sync(path.exists):
            raise oap.OapError("not_found", f"this node does not store {req.id}")
        key = key_of(req.id)
        self.state.providing.add(key)
        took = await self.providing.provide({key})
        return dht.Provided(took.get(key, 0))

    def table(self) -> dht.TableView:
        st = self.state
        counts = st.store.counts()
        return dht.TableView(
            node_id=st.node_id,
            contacts=len(st.table),
            buckets=tuple(sorted(st.table.bucket_sizes().items(), reverse=True)),
            records=len(st.store),
            provider_records=counts["providers"],
            peer_records=counts["peers"],
            providing=len(st.providing),
            last_refresh=st.last_refresh,
            last_provide=st.last_provide,
            lookups_per_minute=st.lookups_per_minute(),
            hops_p95=st.hops_p95(),
        )

    async def seed(self, req: dht.Seed) -> dht.Seeded:
        contact = contact_of(req.addr)
        assert contact is not None  # the request's validator parsed it
        try:
            await self.ask(contact, dht.Ping(), self.state.settings.request_timeout)
        except Unreachable as exc:
            raise oap.OapError("unavailable", f"{req.addr}: {exc.reason}", retry_after=1) from None
        self.state.table.seen(contact, trio.current_time())
        if self.joins is not None:
            with contextlib.suppress(trio.WouldBlock):  # a join is already due
                self.joins.send_nowait(None)
        return dht.Seeded(text_of(contact.key))
