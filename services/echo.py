"""svc-echo: the smallest real service. Answers OAP/1 requests on its command socket.

HELLO (app_proto_id 0) gets this node's OAP/1 limits; any other request is echoed back (RESP 200,
same corr_id, same payload). It exists so the supervisor has something real to supervise and the
tests and drills have something to crash, hang and measure; it is also the template for a service.
"""

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
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main)
