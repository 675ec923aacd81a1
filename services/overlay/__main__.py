"""svc-overlay's process (``python -m services.overlay``, started by the node).

At start it waits for svc-passport to answer (so the node's identity key exists), loads that key
read-only and makes its TLS certificate from it; then it serves peers on the socket the node
bound for ``overlay.addr`` and serves the node's own services (``fetch``, ``peers``) on its
command socket.
"""

from __future__ import annotations

import contextlib

import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import dht, index, mailbox, overlay, storage
from ipc.proto.codec import Request, call
from ipc.transport import Listener, NodeCertificate, PeerAddr
from ipc.transport.budget import SendBudget
from ipc.transport.metered import NodeMeter
from kernel import logs
from kernel.heap import give_back_memory
from kernel.identity import wait_identity
from kernel.key_feed import FirstKeys, KeyFeed
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib import objstore
from services.lib.node_key import node_key
from services.lib.tokens import TokenGate
from services.overlay.admin import admin_routes
from services.overlay.fetch import Fetcher
from services.overlay.serve import PeerServer
from services.overlay.settings import OverlaySettings

FEATURES = ("objects", "names", "mailbox")
MAILBOX = "svc-mailbox"
DHT = "svc-dht"
DHT_TIMEOUT = 10.0  # seconds svc-dht gets to answer a relayed request
MAIL_TIMEOUT = 10.0  # seconds svc-mailbox gets for a request (plus a receive's wait)


def _runs(ctx: ServiceContext, name: str) -> bool:
    return any(spec.name == name for spec in ctx.config.services)


TRIM_AFTER = 16  # connections closed since the busiest moment: give their memory back


async def _trim_after_bursts(listener: Listener) -> None:
    """After many connections closed (an attack, a spike), RSS returns to its baseline."""
    high = 0
    while True:
        await trio.sleep(2.0)
        high = max(high, listener.open + listener.shaking)
        if high - (listener.open + listener.shaking) >= TRIM_AFTER:
            give_back_memory()
            high = listener.open + listener.shaking


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(OverlaySettings)
    root = objstore.store_root(ctx.data_dir)
    meter = NodeMeter(ctx.metrics)
    async with (
        CommandClient.connect(ctx.runtime_dir, "svc-passport", max_inflight=4, timeout=2.0) as pp,
        CommandClient.connect(ctx.runtime_dir, "svc-storage", max_inflight=64, timeout=30.0) as st,
        CommandClient.connect(ctx.runtime_dir, "svc-index", max_inflight=64, timeout=5.0) as ix,
        CommandClient.connect(ctx.runtime_dir, MAILBOX, max_inflight=256, timeout=30.0) as mb,
        CommandClient.connect(ctx.runtime_dir, DHT, max_inflight=256, timeout=DHT_TIMEOUT) as dh,
    ):
        cert = NodeCertificate.from_identity(
            node_key(ctx.data_dir, await wait_identity(pp), "overlay_no_identity")
        )

        async def resolve(req: Request[index.NameRecord]) -> index.NameRecord:
            return await call(ix, index.PROTOCOL, req)

        async def quarantine(obj_id: str) -> None:
            # a failure here: svc-storage re-verifies at its next chance; never served meanwhile
            with contextlib.suppress(oap.OapError):
                await call(st, storage.PROTOCOL, storage.Quarantine(id=obj_id))

        async def commit(req: storage.Commit) -> storage.Stored:
            return await call(st, storage.PROTOCOL, req)

        async def room() -> int:
            usage = await call(st, storage.PROTOCOL, storage.Usage(), timeout=5.0)
            return max(0, usage.max_bytes - usage.bytes)

        async def mail(frame: oap.Frame, wait: float) -> oap.Frame:
            return await mb.request(frame, timeout=wait + MAIL_TIMEOUT)

        federation = {PeerAddr.parse(t).node_id for t in ctx.config.overlay.peers}

        async def dht_call(frame: oap.Frame) -> oap.Frame:
            return await dh.request(frame, timeout=DHT_TIMEOUT)

        async def discover(obj_id: str) -> dht.ProvsFound:
            return await call(dh, dht.LOCAL, dht.FindProvs(id=obj_id, limit=8))

        async def find_peer(node_id: str) -> dht.PeerFound:
            return await call(dh, dht.LOCAL, dht.FindPeer(node_id=node_id))

        # uploads need a write token (auth.writes = "token", the default), checked in-process
        gate = None if ctx.config.auth.writes == "open" else TokenGate()
        first_keys = FirstKeys(gate)

        hello = oap.HelloResponse(
            max_frame=oap.MAX_FRAME,
            max_inflight=settings.inflight_per_conn,
            features=FEATURES,
            transports=("tls" if settings.tls else "tcp",),
        )
        peer_server = PeerServer(
            root,
            hello,
            resolve=resolve,
            quarantine=quarantine,
            inflight=settings.inflight_per_conn,
            node_id=cert.node_id,
            pq_mode=ctx.config.pq.mode,
            gate=gate,
            first_keys=first_keys,
            commit=commit,
            mail=mail if _runs(ctx, MAILBOX) else None,
            dht_call=dht_call if _runs(ctx, DHT) else None,
            federation=federation,
            mail_from=settings.mail_from,
            budget=SendBudget(settings.send_budget, settings.send_budget_per_source),
        )

        def refused(reason: str, detail: str, remote: tuple[str, int]) -> None:
            logs.log(
                "peer_refused",
                level="warning",
                reason=reason,
                detail=detail,
                remote=f"{remote[0]}:{remote[1]}",
            )

        sock = ctx.listen_socket()  # once: each call wraps the fd in a new socket object
        host, port = sock.getsockname()[:2]
        bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        listener = Listener(
            sock,
            cert,
            peer_server,
            limits=settings.limits(),
            meter=meter,
            tls=settings.tls,
            on_refused=refused,
        )
        fetcher = Fetcher(
            tuple(PeerAddr.parse(text) for text in ctx.config.overlay.peers),
            cert,
            root,
            commit,
            room=room,
            limits=settings.limits(),
            tls=settings.tls,
            hedge_delay=settings.hedge_delay,
            fanout=settings.fanout,
            fetch_timeout=settings.fetch_timeout,
            min_rate=settings.min_rate,
            ban_window=settings.ban_window,
            max_object_size=settings.max_object_size,
            meter=meter,
            pq_mode=ctx.config.pq.mode,
            discover=discover if _runs(ctx, DHT) else None,
            find_peer=find_peer if _runs(ctx, DHT) else None,
        )

        async def dispatch(req: Request[object]) -> object:
            match req:
                case overlay.Fetch(id=obj_id, wait=wait):
                    return await fetcher.fetch(obj_id, wait, req)
                case overlay.Peers():
                    return overlay.PeerList(tuple(fetcher.peers() + peer_server.inbound_peers()))
                case overlay.Locate(node_id=node_id):
                    return await fetcher.locate(node_id)
                case overlay.Whoami():
                    return overlay.Me(node_id=cert.node_id, addr=bound)
                case overlay.Deliver(node_id=node, mailbox=mb, messages=messages):
                    return await fetcher.deliver(node, mailbox.Send(mailbox=mb, messages=messages))
            raise oap.OapError("schema_invalid", f"svc-overlay has no op {req.OP!r}")

        handler = protocol_handler(
            overlay.LOCAL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
        )

        async def seed(addr: str) -> None:
            try:
                await call(dh, dht.LOCAL, dht.Seed(addr=addr), timeout=DHT_TIMEOUT)
            except oap.OapError as exc:
                logs.log("peer_not_seeded", level="warning", addr=addr, reason=exc.reason)

        routes = admin_routes(fetcher, peer_server, federation, seed if _runs(ctx, DHT) else None)
        server = ctx.command_server(handler, admin=routes)
        # a warm spare waits here: its certificate made, nothing accepted, dialled or asked yet
        # (the key feed is a verifier the passport counts: only the live instance is one)
        await ctx.live()
        if not settings.tls:
            logs.log(
                "overlay_plaintext",
                level="warning",
                reason="tls = false: peers are not authenticated",
            )
        async with trio.open_nursery() as nursery:
            if gate is not None:
                feed = KeyFeed(pp, gate, verifier=ctx.name, first=first_keys)
                await nursery.start(feed.run)
            await nursery.start(fetcher.run)
            await nursery.start(listener.serve)
            nursery.start_soon(_trim_after_bursts, listener)
            await nursery.start(server.run)
            logs.log(
                "overlay_serving",
                node_id=cert.node_id,
                peers=len(ctx.config.overlay.peers),
                tls=settings.tls,
            )
            ctx.ready()


if __name__ == "__main__":
    run_service(main, warm=True)
