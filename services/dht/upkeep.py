"""svc-dht's background work, each a loop owned by the service's nursery.

- ``join``: ping the bootstrap peers (``dht.bootstrap`` + ``overlay.peers``) and a saved
  table's contacts, look up our own id, put our peer record on the nodes nearest it, and
  offer every record we provide; again with backoff (1 s to 30 s) while the table is empty,
  and at once when an operator seeds a peer;
- ``pinger``: the liveness checks full buckets ask for;
- ``refresh``: a lookup in every bucket nobody touched for ``refresh_after``;
- ``watch``: new objects in the store are provided, gone ones withdrawn;
- ``repair``: missing records offered again (every ``REPAIR_EVERY`` s);
- ``republish``: every record and our peer record offered again every ``REPUBLISH``;
- ``housekeeping``: expired records dropped, gauges set, the table saved.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import trio

from ipc.proto import dht
from kernel.heap import give_back_memory
from services.dht.links import Unreachable
from services.dht.lookups import Ask, Lookups
from services.dht.persist import save_contacts
from services.dht.providing import Providing
from services.dht.state import DhtState
from services.dht.watch import StoreWatch
from services.dht.wire import peer_to_wire
from services.lib.kad import Contact, random_key_in
from services.lib.kad.records import REPUBLISH

__all__ = ["Upkeep"]

REPAIR_EVERY = 10.0
JOIN_BACKOFF = (1.0, 30.0)
HOUSEKEEPING = 1.0
EXPIRE_EVERY = 60.0
TRIM_AFTER = 10_000  # records stored (or dropped) since the last trim of the heap


class Gauges:
    """What the housekeeping loop sets (the service wires these to its metrics)."""

    def set(self, contacts: int, records: int, missing: int) -> None: ...


class Upkeep:
    def __init__(
        self,
        state: DhtState,
        lookups: Lookups,
        providing: Providing,
        ask: Ask,
        *,
        seeds: list[Contact],
        data_dir: Path,
        gauges: Gauges,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.lookups = lookups
        self.providing = providing
        self.ask = ask
        self.seeds = seeds
        self.data_dir = data_dir
        self.gauges = gauges
        self.rng = rng or random.Random()
        self.joined = trio.Event()  # the first join attempt is over (the watch waits for it)
        self.join_now, self._join_wanted = trio.open_memory_channel[None](1)

    async def ping(self, contact: Contact) -> bool:
        try:
            await self.ask(contact, dht.Ping(), self.state.settings.request_timeout)
        except Unreachable:
            return False
        self.state.table.seen(contact, trio.current_time())
        return True

    async def join_once(self) -> bool:
        """One join; True if the table has contacts afterwards."""
        st = self.state
        async with trio.open_nursery() as nursery:
            for contact in self.seeds:
                if contact.key != st.own and contact.key not in st.table:
                    nursery.start_soon(self.ping, contact)
        if not len(st.table):
            return False
        found = await self.lookups.find_node(st.own)
        record = dht.PutPeer(record=_wire_peer(st))
        async with trio.open_nursery() as nursery:
            for contact in found.nearest:
                nursery.start_soon(self._quiet, contact, record)
        await self.providing.provide(set(st.providing), paced=True)
        return True

    async def _quiet(self, contact: Contact, request: dht.PutPeer) -> None:
        with contextlib.suppress(Unreachable):  # it missed our record: the next join tries again
            await self.ask(contact, request, self.state.settings.request_timeout)

    async def join(self) -> None:
        delay = JOIN_BACKOFF[0]
        while True:
            ok = await self.join_once()
            self.joined.set()
            if ok:
                delay = JOIN_BACKOFF[0]
                with trio.move_on_after(REPUBLISH):
                    await self._join_wanted.receive()
            else:
                with trio.move_on_after(delay):
                    await self._join_wanted.receive()
                delay = min(delay * 2, JOIN_BACKOFF[1])

    async def pinger(self, checks: trio.MemoryReceiveChannel[Contact]) -> None:
        async for contact in checks:
            if await self.ping(contact):
                self.state.table.ping_answered(contact.key, trio.current_time())
            else:
                self.state.table.ping_failed(contact.key)

    async def refresh(self) -> None:
        st = self.state
        every = min(st.settings.refresh_after / 4, 60.0)
        while True:
            await trio.sleep(every)
            for bucket in st.table.stale(trio.current_time(), st.settings.refresh_after):
                await self.lookups.find_node(random_key_in(st.own, bucket, self.rng))
            st.last_refresh = st.wall()

    async def watch(self) -> None:
        st = self.state
        watcher = StoreWatch(self.data_dir)
        await self.joined.wait()
        while True:
            added, removed = await trio.to_thread.run_sync(watcher.poll)
            if removed:
                self.providing.withdraw(removed)
            if added:
                st.providing |= added
                await self.providing.provide(added, paced=True)
            await trio.sleep(st.settings.watch_interval)

    async def repair(self) -> None:
        while True:
            await trio.sleep(REPAIR_EVERY)
            await self.providing.repair()

    async def republish(self) -> None:
        while True:
            await trio.sleep(REPUBLISH)
            await self.providing.provide(set(self.state.providing), paced=True)

    async def housekeeping(self) -> None:
        st = self.state
        last_expire = last_save = trio.current_time()
        trimmed_at = 0
        while True:
            await trio.sleep(HOUSEKEEPING)
            self.gauges.set(len(st.table), len(st.store), len(st.missing))
            if abs(len(st.store) - trimmed_at) >= TRIM_AFTER:
                give_back_memory()  # batches of records decoded and dropped: RSS back down
                trimmed_at = len(st.store)
            now = trio.current_time()
            if now - last_expire >= EXPIRE_EVERY:
                st.store.expire(st.wall())
                last_expire = now
            if now - last_save >= st.settings.save_interval:
                await self.save()
                last_save = now

    async def save(self) -> None:
        contacts = self.state.table.contacts()
        await trio.to_thread.run_sync(save_contacts, self.data_dir, contacts)


def _wire_peer(state: DhtState) -> dht.SignedPeer:
    return peer_to_wire(state.record())
