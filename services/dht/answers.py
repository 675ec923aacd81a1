"""What svc-dht answers another node (``ipc.proto.dht.PEER``, relayed by svc-overlay).

Guarantees:

- every request first passes the rate limit of its peer (``via``, the node id its TLS
  connection proved) and of its IP address: over either, 429 ``rate_limited`` with
  ``retry_after``, counted as ``rate_limited``; nothing else is done for it;
- a sender's peer record makes it a contact only if it is valid, signed, and speaks for the
  node the connection proved (else it is counted under its reason and ignored: the request
  is still answered); a full bucket asks for a liveness check of its oldest contact, queued
  for the pinger (bounded: a check that does not fit is skipped, the contact stays);
- every record offered (``add_providers``, ``put_peer``) is checked before it is stored; each
  refusal is counted under its reason and the answer says how many were stored and refused;
  a batch's signatures are checked in a worker thread (a 2,048-record batch does not stall
  the other requests);
- answers hold at most ``k`` contacts and ``k`` provider records.
"""

from __future__ import annotations

import contextlib

import trio

from ipc import oap
from ipc.proto import dht
from ipc.proto.codec import AnyRequest
from services.dht.ratelimit import KeyedRate
from services.dht.state import DhtState
from services.dht.wire import (
    addr_of,
    contact_of,
    key_of_public,
    peer_from_wire,
    peer_to_wire,
    provider_to_wire,
)
from services.lib.kad import Contact, ProviderRecord, Rejected, check, key_of

__all__ = ["Responder"]

PINGS = 64  # liveness checks waiting at once


class Responder:
    def __init__(self, state: DhtState) -> None:
        self.state = state
        self.limit = KeyedRate(state.settings.rate, state.settings.burst)
        self.pings_in, self.pings_out = trio.open_memory_channel[Contact](PINGS)

    async def answer(self, request: AnyRequest) -> object:
        via = getattr(request, "via", None)
        ip = getattr(request, "ip", None)
        self._admit(via, ip)
        self._learn(getattr(request, "sender", None), via)
        st = self.state
        k = st.settings.k
        match request:
            case dht.Ping():
                return dht.Pong(st.node_id)
            case dht.FindNode(target=target):
                return dht.Nodes(self._nearest(key_of(target), via))
            case dht.FindProviders(id=obj_id):
                key = key_of(obj_id)
                held = st.store.providers(key, st.wall(), limit=k)
                return dht.ProvidersAnswer(
                    tuple(provider_to_wire(r) for r in held), self._nearest(key, via)
                )
            case dht.AddProviders():
                return await self._add_providers(request)
            case dht.PutPeer(record=wire):
                offered = peer_from_wire(wire)
                try:
                    check(offered, st.wall())
                except Rejected as exc:
                    return self._added([exc.reason])
                return self._added([st.store.put_peer(offered)])
            case dht.GetPeer(node_id=node_id):
                key = key_of(node_id)
                mine = st.record() if key == st.own else st.store.peer(key, st.wall())
                answer = peer_to_wire(mine) if mine is not None else None
                return dht.PeerAnswer(answer, self._nearest(key, via))
        raise oap.OapError("schema_invalid", f"svc-dht answers no {request.OP!r} from a peer")

    def _admit(self, via: str | None, ip: str | None) -> None:
        now = trio.current_time()
        for key in (f"node {via}" if via else "", f"ip {ip}" if ip else ""):
            wait = self.limit.take(key, now) if key else 0
            if wait:
                self.state.stats.rejected("rate_limited")
                raise oap.OapError("rate_limited", "too many DHT requests", retry_after=wait)

    def _learn(self, sender: dht.SignedPeer | None, via: str | None) -> None:
        if sender is None or via is None:
            return
        st = self.state
        try:
            record = peer_from_wire(sender)
            check(record, st.wall())
            if record.node != key_of(via):
                raise Rejected("node_id", "the record is not the connection's node")
        except (Rejected, ValueError) as exc:
            st.stats.rejected(exc.reason if isinstance(exc, Rejected) else "node_id")
            return
        contact = contact_of(addr_of(record.node, record.addrs[0])) if record.addrs else None
        if contact is None:
            return
        seen = st.table.seen(contact, trio.current_time())
        if seen.ping is not None:
            # checks are behind: this one is skipped, the old contact stays
            with contextlib.suppress(trio.WouldBlock):
                self.pings_in.send_nowait(seen.ping)

    def _nearest(self, key: int, via: str | None) -> tuple[str, ...]:
        asker = key_of(via) if via else None
        near = self.state.table.closest(key, self.state.settings.k + 1)
        return tuple(c.addr for c in near if c.key != asker)[: self.state.settings.k]

    async def _add_providers(self, req: dht.AddProviders) -> dht.Added:
        st = self.state
        if len(req.keys) != len(req.sigs):
            raise oap.OapError("schema_invalid", "add_providers: keys and sigs differ in length")
        provider = key_of_public(req.public)
        now = st.wall()
        records = [
            ProviderRecord(
                int.from_bytes(key, "big"), provider, req.addrs, req.expires, req.public, sig
            )
            for key, sig in zip(req.keys, req.sigs, strict=True)
            if len(key) == 32
        ]
        bad_keys = len(req.keys) - len(records)
        verdicts = await trio.to_thread.run_sync(_check_all, records, now)
        outcomes = ["oversized"] * bad_keys
        for record, verdict in zip(records, verdicts, strict=True):
            outcomes.append(verdict or st.store.add_provider(record))
        return self._added(outcomes)

    def _added(self, outcomes: list[str]) -> dht.Added:
        stored = sum(1 for o in outcomes if o in ("stored", "refreshed"))
        for outcome in outcomes:
            if outcome not in ("stored", "refreshed"):
                self.state.stats.rejected(outcome)
        return dht.Added(stored, len(outcomes) - stored)


def _check_all(records: list[ProviderRecord], now: float) -> list[str]:
    """Each record's refusal reason, "" when it checks (run in a worker thread)."""
    out = []
    for record in records:
        try:
            check(record, now)
            out.append("")
        except Rejected as exc:
            out.append(exc.reason)
    return out
