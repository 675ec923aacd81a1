"""svc-dht's process (``python -m services.dht``, started by the node).

At start it gets the node's identity key (from svc-passport's custody) and asks svc-overlay
where the node is reached (the address it announces in its peer record); then it serves the
DHT on its command socket (peers' requests arrive there through svc-overlay's relay, the
node's own on the same socket) and keeps its table, records and providing up to date.
"""

from __future__ import annotations

import random

import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import dht, overlay
from ipc.proto.codec import Request, call
from ipc.transport import Limits, NodeCertificate
from ipc.transport.metered import NodeMeter
from kernel import logs
from kernel.identity import wait_identity
from kernel.metrics import Metrics
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.dht.admin import admin_routes
from services.dht.answers import Responder
from services.dht.links import Links
from services.dht.local import Local
from services.dht.lookups import Lookups
from services.dht.persist import load_contacts
from services.dht.providing import Providing
from services.dht.settings import DhtSettings
from services.dht.state import DhtState, Stats
from services.dht.upkeep import Gauges, Upkeep
from services.dht.wire import contact_of, peer_to_wire
from services.lib import objstore
from services.lib.kad import Signer
from services.lib.node_key import node_key

FEATURES = ("dht",)
WHOAMI_WAIT = 30.0  # seconds svc-overlay gets to answer where the node listens


class MetricStats(Stats):
    def __init__(self, metrics: Metrics) -> None:
        self._rejected = metrics.counter("dht_rejected")
        self._ms = metrics.histogram("ron_dht_lookup_ms")
        self._hops = metrics.histogram("ron_dht_lookup_hops")
        self._repair = metrics.counter("ron_dht_repair_bytes")

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def lookup(self, seconds: float, hops: int) -> None:
        self._ms.observe(seconds * 1000)
        self._hops.observe(hops)

    def repair_bytes(self, n: int) -> None:
        self._repair.inc(n)


class MetricGauges(Gauges):
    def __init__(self, metrics: Metrics) -> None:
        self._contacts = metrics.gauge("dht_contacts")
        self._records = metrics.gauge("dht_records")
        self._missing = metrics.gauge("ron_dht_missing_records")

    def set(self, contacts: int, records: int, missing: int) -> None:
        self._contacts.set(contacts)
        self._records.set(records)
        self._missing.set(missing)


async def whereabouts(client: CommandClient) -> overlay.Me:
    """svc-overlay's node id and bound address, once it answers."""
    with trio.move_on_after(WHOAMI_WAIT):
        while True:
            try:
                me: overlay.Me = await call(client, overlay.LOCAL, overlay.Whoami(), timeout=2.0)
                return me
            except oap.OapError:
                await trio.sleep(0.2)
    logs.log("dht_no_overlay", level="error", reason="svc-overlay did not say where it listens")
    raise SystemExit(2)


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(DhtSettings)
    async with (
        CommandClient.connect(ctx.runtime_dir, "svc-passport", max_inflight=4, timeout=2.0) as pp,
        CommandClient.connect(ctx.runtime_dir, "svc-overlay", max_inflight=4, timeout=2.0) as ov,
    ):
        key = node_key(ctx.data_dir, await wait_identity(pp), "dht_no_identity")
        me = await whereabouts(ov)
    signer = Signer(key)
    state = DhtState(signer, (me.addr,), settings, stats=MetricStats(ctx.metrics))
    cert = NodeCertificate.from_identity(key)
    links = Links(
        cert,
        lambda: peer_to_wire(state.record()),
        limits=Limits(handshake_timeout=settings.request_timeout),
        meter=NodeMeter(ctx.metrics),
        tls=settings.tls,
        pq_mode=ctx.config.pq.mode,
        max_conns=settings.max_conns,
    )
    lookups = Lookups(state, links.ask)
    providing = Providing(state, lookups, links.ask)
    responder = Responder(state)
    # a warm spare waits here: keyed, certified and wired, nothing dialled, served or saved yet;
    # the saved table is read by the live instance (the last one saved it until it went)
    await ctx.live()
    saved = load_contacts(ctx.data_dir)
    state.table.load(saved, trio.current_time())
    texts = (*ctx.config.dht.bootstrap, *ctx.config.overlay.peers)
    seeds = [c for c in map(contact_of, texts) if c is not None]
    upkeep = Upkeep(
        state,
        lookups,
        providing,
        links.ask,
        seeds=seeds + saved,
        data_dir=ctx.data_dir,
        gauges=MetricGauges(ctx.metrics),
        rng=random.Random(),
    )
    local = Local(state, lookups, providing, links.ask, objstore.store_root(ctx.data_dir))
    local.joins = upkeep.join_now

    async def dispatch(req: Request[object]) -> object:
        match req:
            case dht.FindProvs():
                return await local.findprovs(req)
            case dht.FindPeer():
                return await local.findpeer(req)
            case dht.Provide():
                return await local.provide(req)
            case dht.Table():
                return local.table()
            case dht.Seed():
                return await local.seed(req)
        return await responder.answer(req)

    handler = protocol_handler(
        dht.LOCAL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
    )

    server = ctx.command_server(handler, admin=admin_routes(local))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(links.run)
            await nursery.start(server.run)
            nursery.start_soon(upkeep.join)
            nursery.start_soon(upkeep.pinger, responder.pings_out)
            nursery.start_soon(upkeep.refresh)
            nursery.start_soon(upkeep.watch)
            nursery.start_soon(upkeep.repair)
            nursery.start_soon(upkeep.republish)
            nursery.start_soon(upkeep.housekeeping)
            logs.log(
                "dht_serving",
                node_id=state.node_id,
                addr=me.addr,
                seeds=len(seeds),
                saved=len(saved),
            )
            ctx.ready()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            await upkeep.save()


if __name__ == "__main__":
    run_service(main, warm=True)
