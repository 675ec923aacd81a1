"""svc-echo's process (``python -m services.echo``)."""

from __future__ import annotations

import trio

from ipc import oap
from kernel.service import ServiceContext, run_service

FEATURES = ("echo",)


def make_handler(ctx: ServiceContext):
    hello = ctx.hello(FEATURES)

    async def handle(frame: oap.Frame) -> oap.Frame:
        if oap.is_hello_request(frame):
            return oap.hello_response(frame, hello)
        return oap.response(frame, frame.payload)

    return handle


async def main(ctx: ServiceContext) -> None:
    server = ctx.command_server(make_handler(ctx))
    await ctx.live()  # a warm spare waits here: everything above is ready ahead of a crash
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main, warm=True)
