"""svc-overlay's process (``python -m services.overlay``, started by the node).

At start it waits for svc-passport to answer (so the node's identity key exists), loads that key
read-only and makes its TLS certificate from it; then it serves peers on the socket the node
bound for ``overlay.addr`` and serves the node's own services (``fetch``, ``peers``) on its
command socket.
"""

from __future__ import annotations

import contextlib

import attrs
import trio

from ipc import oap
from ipc.commands import CommandClient
from ipc.proto import index, mailbox, overlay, storage
from ipc.proto.admin import AdminAnswer
from ipc.proto.codec import Request, call
from ipc.transport import Listener, Meter, NodeCertificate, PeerAddr
from ipc.transport.budget import SendBudget
from kernel import logs
from kernel.admin_calls import AdminCall, answer_json
from kernel.heap import give_back_memory
from kernel.identity import wait_identity
from kernel.key_feed import KeyFeed
from kernel.metrics import Metrics
from kernel.protocol_handler import protocol_handler
from kernel.service import ServiceContext, run_service
from services.lib import objstore
from services.lib.keys import KEYS_DIR, KeyCustodyError, load_identity
from services.lib.tokens import TokenGate
from services.overlay.fetch import Fetcher
from services.overlay.serve import PeerServer
from services.overlay.settings import OverlaySettings

FEATURES = ("objects", "names", "mailbox")
MAILBOX = "svc-mailbox"
MAIL_TIMEOUT = 10.0  # seconds svc-mailbox gets for a request (plus a receive's wait)


class NodeMeter(Meter):
    """The transport's reports, into the node's metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._dials = metrics.counter("transport_dials")
        self._accepts = metrics.counter("transport_accepts")
        self._handshake = metrics.histogram("handshake_latency_seconds")
        self._tls_failures = metrics.counter("tls_handshake_failures")
        self._rejected = metrics.rejected
        self._io_timeouts = metrics.counter("io_timeouts")
        self._pq_fallback = metrics.counter("pq_fallback")
        self._inflight = metrics.gauge("conn_inflight")
        self._bytes = {"in": metrics.counter("bytes_in"), "out": metrics.counter("bytes_out")}

    def dialed(self, result: str) -> None:
        self._dials.labels(backend="tls", result=result).inc()

    def accepted(self) -> None:
        self._accepts.inc()

    def handshake(self, seconds: float) -> None:
        self._handshake.observe(seconds)

    def tls_failure(self) -> None:
        self._tls_failures.inc()

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def io_timeout(self, op: str) -> None:
        self._io_timeouts.labels(op=op).inc()

    def pq_fallback(self) -> None:
        self._pq_fallback.inc()

    def inflight(self, delta: int) -> None:
        self._inflight.inc(delta)

    def moved(self, direction: str, size: int) -> None:
        self._bytes["in" if direction == "in" else "out"].inc(size)


async def node_certificate(ctx: ServiceContext, passport_client: CommandClient) -> NodeCertificate:
    """The node's certificate, once svc-passport has made (or found) the identity key."""
    ident = await wait_identity(passport_client)
    if ident is None:
        logs.log("overlay_no_identity", level="error", reason="svc-passport did not answer")
        raise SystemExit(2)
    try:
        cert = NodeCertificate.from_identity(load_identity(ctx.data_dir / KEYS_DIR))
    except (FileNotFoundError, KeyCustodyError) as exc:
        logs.log("overlay_no_identity", level="error", reason=str(exc))
        raise SystemExit(2) from None
    if cert.node_id != ident.node_id:
        logs.log("overlay_no_identity", level="error", reason="the key file is not svc-passport's")
        raise SystemExit(2)
    return cert


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
    if not settings.tls:
        logs.log(
            "overlay_plaintext", level="warning", reason="tls = false: peers are not authenticated"
        )
    root = objstore.store_root(ctx.data_dir)
    meter = NodeMeter(ctx.metrics)
    async with (
        CommandClient.connect(ctx.runtime_dir, "svc-passport", max_inflight=4, timeout=2.0) as pp,
        CommandClient.connect(ctx.runtime_dir, "svc-storage", max_inflight=64, timeout=30.0) as st,
        CommandClient.connect(ctx.runtime_dir, "svc-index", max_inflight=64, timeout=5.0) as ix,
        CommandClient.connect(ctx.runtime_dir, MAILBOX, max_inflight=256, timeout=30.0) as mb,
    ):
        cert = await node_certificate(ctx, pp)

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

        # uploads need a write token (auth.writes = "token", the default), checked in-process
        gate = None if ctx.config.auth.writes == "open" else TokenGate()

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
            commit=commit,
            mail=mail if any(spec.name == MAILBOX for spec in ctx.config.services) else None,
            federation=frozenset(PeerAddr.parse(t).node_id for t in ctx.config.overlay.peers),
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

        listener = Listener(
            ctx.listen_socket(),
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
        )

        async def dispatch(req: Request[object]) -> object:
            match req:
                case overlay.Fetch(id=obj_id, wait=wait):
                    return await fetcher.fetch(obj_id, wait)
                case overlay.Peers():
                    return fetcher.peers()
                case overlay.Deliver(node_id=node, mailbox=mb, messages=messages):
                    return await fetcher.deliver(node, mailbox.Send(mailbox=mb, messages=messages))
            raise oap.OapError("schema_invalid", f"svc-overlay has no op {req.OP!r}")

        handler = protocol_handler(
            overlay.LOCAL, hello=ctx.hello(FEATURES), dispatch=dispatch, metrics=ctx.metrics
        )

        async def peers_view(_call: AdminCall) -> AdminAnswer:
            return answer_json(200, {"peers": [attrs.asdict(p) for p in fetcher.peers().peers]})

        server = ctx.command_server(handler, admin={"/peers": peers_view})
        async with trio.open_nursery() as nursery:
            if gate is not None:
                await nursery.start(KeyFeed(pp, gate, verifier=ctx.name).run)
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
    run_service(main)
