"""svc-index's process (``python -m services.index``): the command handler over ``NameIndex``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ipc import ids, oap
from kernel import logs
from kernel.service import ServiceContext, run_service
from services.index.names import NameIndex
from services.lib.protocol import INDEX_PROTO, check_name, ok_frame, op_handler

FEATURES = ("index",)
INDEX_DIR = "index"


def make_handler(
    ctx: ServiceContext, index: NameIndex
) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    hello = ctx.hello(FEATURES)
    metrics = ctx.metrics

    async def dispatch(req: oap.Frame, op: str, f: dict[str, Any]) -> oap.Frame:
        name = check_name(f["name"])
        if op == "get":
            found = await index.get(name)
            if found is None:
                raise oap.OapError("not_found", f"no name {name!r}")
            return ok_frame(req, name=name, id=found[0], version=found[1])
        if not ids.is_id(f["id"]):
            raise oap.OapError("schema_invalid", f"{f['id']!r:.80} is not a content id")
        version = await index.put(name, f["id"], f.get("expect_version"))
        return ok_frame(req, name=name, id=f["id"], version=version)

    return op_handler(
        proto=INDEX_PROTO, service="svc-index", hello=hello, dispatch=dispatch, metrics=metrics
    )


async def main(ctx: ServiceContext) -> None:
    index = NameIndex(ctx.data_dir / INDEX_DIR)
    try:
        count = await index.open()
        logs.log("index_opened", names=count)
        server = ctx.command_server(make_handler(ctx, index))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(index.run_committer)
            await nursery.start(server.run)
            ctx.ready()
    finally:
        index.close()


if __name__ == "__main__":
    run_service(main)
