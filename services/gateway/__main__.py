"""svc-gateway: the node's HTTP ingress (``python -m services.gateway``, started by the node)."""

from __future__ import annotations

import sys

import trio

from ipc.commands import CommandClient
from kernel import logs
from kernel.service import ServiceContext, run_service
from services.gateway.app import GatewayApp
from services.gateway.auth import Guard, KeyFeed
from services.gateway.server import serve
from services.gateway.settings import GatewaySettings
from services.gateway.store_backend import StoreBackend

# The event loop shares the GIL with the file-I/O threads; when one of them is running Python
# between its system calls, the loop waits up to this long to get the GIL back (CPython's
# default is 5 ms). At c = 512 (bench/gateway.py --only overload) 0.5 ms took the 429 p99 from
# ~33 ms to ~26 ms and served ~5 % more requests.
GIL_SWITCH_INTERVAL = 0.0005


async def main(ctx: ServiceContext) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    settings = ctx.settings_as(GatewaySettings)
    sock = ctx.listen_socket()  # not accepted on before ctx.live()
    open_writes = ctx.config.auth.writes == "open"
    async with (
        StoreBackend.open(
            ctx.runtime_dir,
            ctx.data_dir,
            max_inflight=settings.max_inflight,
            timeout=settings.timeout,
            with_overlay=any(spec.name == "svc-overlay" for spec in ctx.config.services),
            with_mailbox=any(spec.name == "svc-mailbox" for spec in ctx.config.services),
        ) as backend,
        CommandClient.connect(ctx.runtime_dir, PASSPORT, max_inflight=4, timeout=2.0) as passport,
    ):
        guard = None if open_writes else Guard()
        backend.on_chunk_read = ctx.metrics.counter("object_chunk_reads").inc
        backend.max_object_size = settings.max_object_size
        backend.hot.limit = settings.hot_cache

        def on_shedding(degraded: bool) -> None:
            logs.log("write_shedding", level="warning" if degraded else "info", degraded=degraded)
            ctx.set_health(not degraded)  # /readyz says so while writes are being shed

        app = GatewayApp(
            backend,
            settings,
            metrics=ctx.metrics,
            fault_delay=getattr(ctx, "fault_delay", None),
            fault_slowing=getattr(ctx, "fault_slowing", None),
            guard=guard,
            on_shedding=on_shedding,
        )
        # a warm spare waits here: connected to its backends, nothing accepted or asked yet
        # (the key feed is a verifier the passport counts: only the live instance is one)
        await ctx.live()
        if open_writes:
            logs.log("writes_open", level="warning", reason="auth.writes = open: anyone may write")
        async with trio.open_nursery() as nursery:
            if guard is not None:
                feed = KeyFeed(passport, guard, verifier=ctx.name, first=guard.first_keys)
                await nursery.start(feed.run)
            await nursery.start(serve, app, sock, settings)
            nursery.start_soon(_judge_shedding_every_second, app)
            logs.log("gateway_serving", addr=str(sock.getsockname()), server=settings.server)
            ctx.ready()


async def _judge_shedding_every_second(app: GatewayApp) -> None:
    """The shed window clears on the clock: /readyz recovers with no further write."""
    while True:
        await trio.sleep(1.0)
        app.shedding.tick()


PASSPORT = "svc-passport"  # where the key set comes from (the kernel's PassportLink says so too)


if __name__ == "__main__":
    run_service(main, warm=True)
