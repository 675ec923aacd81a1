"""svc-probe's process (``python -m tests.support.svc_probe``): see the package docstring."""

from __future__ import annotations

import trio

from ipc import oap
from ipc.proto.admin import AdminAnswer
from kernel.admin_calls import AdminCall, answer_json
from kernel.service import ServiceContext, run_service
from tests.support.svc_probe import Settings


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings_as(Settings)
    hits = ctx.metrics.counter("probe_hits")
    seen = 0

    async def probe(_call: AdminCall) -> AdminAnswer:
        nonlocal seen
        seen += 1
        hits.inc()
        return answer_json(200, {"greeting": settings.greeting, "hits": seen})

    async def refuse(frame: oap.Frame) -> oap.Frame:
        raise oap.OapError("unknown_app_proto", "svc-probe serves only its admin view")

    server = ctx.command_server(refuse, admin={"/probe": probe})
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main)
