"""Announcing the objects this node stores: sweeps by keyspace region, repair, republish.

Guarantees:

- a batch of keys costs one lookup per keyspace region (``kad.sweep``; a region holds about
  ``k`` to ``2k`` nodes) and one ``add_providers`` per node of the region, holding the keys
  that node is among the ``k`` nearest of (records signed in a worker thread, at most
  ``MAX_BATCH`` per message); a region with one key is looked up by that key itself;
- when we are among a key's ``k`` nearest ourselves, our own store keeps the record too;
- a key that no other node took while the table has contacts is *missing*
  (``ron_dht_missing_records``); ``repair`` offers the missing ones again and counts the
  bytes it sent (``ron_dht_repair_bytes_total``); a key no longer stored is neither provided
  nor missing;
- records are valid ``VALIDITY`` (48 h) and the whole set is offered again every
  ``REPUBLISH`` (22 h), so none lapses while the object is stored.
"""

from __future__ import annotations

import trio

from ipc.proto import dht
from services.dht.links import Unreachable
from services.dht.lookups import Ask, Lookups
from services.dht.state import DhtState
from services.lib.kad import (
    ProviderRecord,
    assign,
    estimate_size,
    region_bits,
    region_middle,
    regions,
)
from services.lib.kad.records import VALIDITY

__all__ = ["Providing"]

REGIONS_AT_ONCE = 4
# a sweep of many keys (a start with a full store, a republish) goes in slices of this many
# neighbouring keys, and takes at most PACE_DUTY of the time: signing and storing 100,000
# records costs seconds of CPU, which must not be taken from the node's other services at once
PACE_BATCH = 1000
PACE_DUTY = 0.25
_pause = trio.sleep  # between slices (a test watches it)


class Providing:
    def __init__(self, state: DhtState, lookups: Lookups, ask: Ask) -> None:
        self.state = state
        self.lookups = lookups
        self.ask = ask

    async def provide(
        self, keys: set[int], *, repair: bool = False, paced: bool = False
    ) -> dict[int, int]:
        """Offer ``keys``' records now; how many nodes (ourselves included) took each.
        ``repair``: the bytes sent count as repair bytes. ``paced``: a background sweep, in
        slices of ``PACE_BATCH`` neighbouring keys (so a slice covers few regions), sleeping
        between them so that it uses at most ``PACE_DUTY`` of the time."""
        if not paced or len(keys) <= PACE_BATCH:
            return await self._provide(keys, repair=repair)
        took: dict[int, int] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), PACE_BATCH):
            began = trio.current_time()
            took.update(
                await self._provide(set(ordered[start : start + PACE_BATCH]), repair=repair)
            )
            await _pause((trio.current_time() - began) * (1 / PACE_DUTY - 1))
        return took

    async def _provide(self, keys: set[int], *, repair: bool) -> dict[int, int]:
        st = self.state
        if not keys:
            return {}
        near = [c.key for c in st.table.closest(st.own)]
        bits = region_bits(estimate_size(st.own, near), st.settings.k) if near else 0
        took: dict[int, int] = dict.fromkeys(keys, 0)
        remote: dict[int, int] = dict.fromkeys(keys, 0)
        limiter = trio.CapacityLimiter(REGIONS_AT_ONCE)

        async def region(prefix: int, members: list[int]) -> None:
            async with limiter:
                await self._region(prefix, bits, members, took, remote, repair)

        async with trio.open_nursery() as nursery:
            for prefix, members in regions(keys, bits).items():
                nursery.start_soon(region, prefix, members)
        st.last_provide = st.wall()
        if len(st.table):
            st.missing |= {key for key, n in remote.items() if n == 0 and key in st.providing}
        st.missing -= {key for key, n in remote.items() if n > 0}
        return took

    async def _region(
        self,
        prefix: int,
        bits: int,
        members: list[int],
        took: dict[int, int],
        remote: dict[int, int],
        repair: bool,
    ) -> None:
        st = self.state
        k = st.settings.k
        if len(members) == 1:
            found = await self.lookups.find_node(members[0])
        else:
            found = await self.lookups.find_node(region_middle(prefix, bits), k=2 * k)
        contacts = {c.key: c for c in found.nearest}
        batches = assign(members, [*contacts, st.own], k)
        expires = int(st.wall()) + VALIDITY
        signed = await trio.to_thread.run_sync(self._sign, sorted(set(members)), expires)

        async def offer(node: int, keys: list[int]) -> None:
            records = [signed[key] for key in keys]
            if node == st.own:
                for record in records:
                    if st.store.add_provider(record) in ("stored", "refreshed"):
                        took[record.key] += 1
                return
            for start in range(0, len(records), dht.MAX_BATCH):
                chunk = records[start : start + dht.MAX_BATCH]
                request = dht.AddProviders(
                    public=st.signer.public,
                    addrs=st.addrs,
                    expires=expires,
                    keys=tuple(r.key.to_bytes(32, "big") for r in chunk),
                    sigs=tuple(r.sig for r in chunk),
                )
                try:
                    added = await self.ask(contacts[node], request, st.settings.request_timeout)
                except Unreachable:
                    continue
                if added.stored:  # a partial refusal (their share is full) counts per batch
                    for record in chunk:
                        took[record.key] += 1
                        remote[record.key] += 1
                if repair:
                    st.stats.repair_bytes(_wire_size(request))

        async with trio.open_nursery() as nursery:
            for node, keys in batches.items():
                nursery.start_soon(offer, node, keys)

    def _sign(self, keys: list[int], expires: int) -> dict[int, ProviderRecord]:
        signer, addrs = self.state.signer, self.state.addrs
        return {key: signer.provider(key, addrs, expires) for key in keys}

    async def repair(self) -> int:
        """Offer the missing keys again; how many are still missing."""
        st = self.state
        if st.missing and len(st.table):
            await self.provide(set(st.missing), repair=True)
        return len(st.missing)

    def withdraw(self, keys: set[int]) -> None:
        """These objects are gone from the store: no longer provided (their records elsewhere
        lapse within ``VALIDITY``; ours here go now)."""
        st = self.state
        st.providing -= keys
        st.missing -= keys
        st.store.drop_provider(keys, st.own)


def _wire_size(request: dht.AddProviders) -> int:
    per_key = 32 + 64 + 6  # a key, a signature, their msgpack headers
    header = len(request.public) + sum(len(a) for a in request.addrs) + 48
    return header + per_key * len(request.keys)
