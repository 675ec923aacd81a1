"""svc-gateway: the node's HTTP ingress (``python -m services.gateway``, started by the node)."""

from __future__ import annotations

import trio

from kernel import logs
from kernel.service import ServiceContext, run_service
from services.gateway.app import GatewayApp
from services.gateway.server import serve
from services.gateway.settings import GatewaySettings
from services.gateway.store_backend import StoreBackend


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(GatewaySettings)
    sock = ctx.listen_socket()
    async with StoreBackend.open(
        ctx.runtime_dir,
        ctx.data_dir,
        max_inflight=settings.max_inflight,
        timeout=settings.timeout,
    ) as backend:
        app = GatewayApp(
            backend, settings, metrics=ctx.metrics, fault_delay=getattr(ctx, "fault_delay", None)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, app, sock, settings)
            logs.log("gateway_serving", addr=str(sock.getsockname()), server=settings.server)
            ctx.ready()


if __name__ == "__main__":
    run_service(main)
