"""svc-storage's process (``python -m services.storage``): the command handler over ``Store``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ipc import oap
from kernel import logs
from kernel.service import ServiceContext, run_service
from services.lib import objstore
from services.lib.protocol import STORAGE_PROTO, ok_frame, op_handler
from services.storage.settings import load_settings
from services.storage.store import Store

FEATURES = ("storage",)


def make_handler(ctx: ServiceContext, store: Store) -> Callable[[oap.Frame], Awaitable[oap.Frame]]:
    hello = ctx.hello(FEATURES)
    metrics = ctx.metrics

    async def dispatch(req: oap.Frame, op: str, f: dict[str, Any]) -> oap.Frame:
        if op == "commit":
            created = await store.commit(f["tmp"], f["id"], f["size"])
            return ok_frame(req, id=f["id"], size=f["size"], created=created)
        if op == "put":
            obj_id, created = await store.put(f["data"])
            return ok_frame(req, id=obj_id, size=len(f["data"]), created=created)
        if op == "stat":
            return ok_frame(req, id=f["id"], size=await store.stat(f["id"]))
        if op == "quarantine":
            return ok_frame(req, quarantined=await store.quarantine(f["id"]))
        s = store.settings
        return ok_frame(
            req,
            bytes=store.usage.bytes,
            objects=store.usage.objects,
            max_bytes=s.max_bytes,
            max_objects=s.max_objects,
            max_object_size=s.max_object_size,
        )

    return op_handler(
        proto=STORAGE_PROTO, service="svc-storage", hello=hello, dispatch=dispatch, metrics=metrics
    )


async def main(ctx: ServiceContext) -> None:
    try:
        settings = load_settings(ctx.settings)
    except ValueError as exc:
        logs.log("bad_settings", level="error", reason=str(exc))
        ctx.set_health(False)
        await trio.sleep_forever()
    store = Store(objstore.store_root(ctx.data_dir), settings, ctx.metrics)
    await store.open()
    server = ctx.command_server(make_handler(ctx, store))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run_committer)
        nursery.start_soon(store.sweep_forever)
        await nursery.start(server.run)
        ctx.ready()


if __name__ == "__main__":
    run_service(main)
